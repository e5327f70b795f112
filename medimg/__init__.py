"""medimg: transfer learning versus self-supervised learning on small medical-image datasets."""
__version__ = "0.1.0"
