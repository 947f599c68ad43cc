"""The one inference path: pre-processing, NMS and mapping back to original pixels.

``preprocess``: decode, letterbox, stack into the network input. ``nms``: non-maximum suppression.
``postprocess``: NMS plus boxes back to original pixels. Used by validation, ``predict``, the Python
API and the export checks alike. Plain PyTorch/NumPy/OpenCV: importing it never imports Lightning.
"""
