"""Report content, figures, PDF and DICOM SEG/SR writers (no Qt)."""
