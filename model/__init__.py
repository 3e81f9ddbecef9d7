"""CACD segmentation: MiT encoders, HFCA, JBCD, fusion, SegFormer decoder, trainer (`cacd` CLI)."""
