"""What one document may weigh, and the resolution its pages are rendered at (no heavy imports: dsocr.envs
declares these defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from dsocr.preprocessing.decode import DEFAULT_MAX_PIXELS

from .errors import DocumentError

# DeepSeek's PDF script renders pages at 144 DPI (zoom 2).
DEFAULT_DPI = 144


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may weigh.

    max_bytes is checked before anything is parsed; max_page_pixels from a
    page's size before it is rendered (a 200-inch page is a bomb at any DPI).
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 1000
    max_page_pixels: int = DEFAULT_MAX_PIXELS  # a rendered page is an image: the image limit
    min_dpi: int = 50
    max_dpi: int = 300

    def check_dpi(self, dpi: object) -> None:
        """Raise DocumentError("invalid_dpi", param "dpi") unless dpi is an int in [min_dpi, max_dpi]."""
        if not isinstance(dpi, int) or isinstance(dpi, bool) or not self.min_dpi <= dpi <= self.max_dpi:
            raise DocumentError(
                "invalid_dpi", f"dpi must be an integer from {self.min_dpi} to {self.max_dpi}, not {dpi!r}", "dpi"
            )
