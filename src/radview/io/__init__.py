"""Reading and writing files: DICOM scan/group/decode, NIfTI/NRRD/MHA, the study index."""
