"""The data set as the pipeline shapes it: images, tables, the split, oversampling, the resized arrays.

Image decoding and checks, reading what an earlier stage wrote (with one-line errors saying
what to rerun), the stratified split, augmented copies of minority artists, and the arrays
of ``data/resized``. Nothing here imports TensorFlow.
"""
