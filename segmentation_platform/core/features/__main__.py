"""`python -m segmentation_platform.core.features > docs/feature_dictionary.md`"""

import sys

from segmentation_platform.core.features import feature_dictionary_markdown

sys.stdout.write(feature_dictionary_markdown())
