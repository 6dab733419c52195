"""Fashion-MNIST for vitnp: IDX files in, seeded NumPy batches out.

=========================  =================================================================================
module                     what it holds
=========================  =================================================================================
``data.idx``               the IDX file format: :func:`read_idx`, :func:`write_idx`
``data.fashion_mnist``     the data set: where its files are, checksums (:func:`md5`), :func:`load_fashion_mnist`,
                           :func:`download_fashion_mnist`, class names, :data:`MEAN`/:data:`STD`, and a
                           synthetic stand-in (:func:`synthetic_gratings`, :func:`fashion_mnist_or_synthetic`)
``data.images``            the one check of image arrays (:func:`check_images`), :func:`normalize`,
                           :func:`resize_images`
``data.splits``            class subsets, the validation split, :func:`prepare_data` (all the splits of a run)
``data.batches``           augmentation and :func:`iterate_batches`, whose order one generator's state fixes
=========================  =================================================================================

Every public name of those modules is importable from ``vitnp.data`` itself, which is how the rest of vitnp,
the notebooks and the scripts use them::

    from vitnp.data import load_fashion_mnist, iterate_batches
    x, y = load_fashion_mnist(split="train")          # uint8 (60000, 28, 28, 1), int64 (60000,)
"""
from .batches import (AUGMENTATIONS, augmentation, crop_and_flip, iterate_batches, random_crop, random_erase,
                      random_hflip)
from .fashion_mnist import (DEFAULT_ROOT, ENV_VAR, FASHION_MNIST_CLASSES, GZ_MD5, MEAN, RAW_MD5, STD, URL,
                            class_names, data_dir, download_fashion_mnist, split_files, fashion_mnist_or_synthetic,
                            load_fashion_mnist, md5, synthetic_gratings)
from .idx import parse_idx, read_bytes, read_idx, write_idx
from .images import check_images, check_labels, check_shrink, normalize, resize_images
from .splits import VAL_SPLIT_SEED, prepare_data, prepare_test, select_classes, stratified_split, train_val_split

__all__ = ["read_bytes", "parse_idx", "read_idx", "write_idx",
           "FASHION_MNIST_CLASSES", "MEAN", "STD", "DEFAULT_ROOT", "ENV_VAR", "RAW_MD5", "GZ_MD5", "URL", "md5",
           "data_dir", "split_files", "load_fashion_mnist", "download_fashion_mnist", "class_names", "synthetic_gratings",
           "fashion_mnist_or_synthetic",
           "check_images", "check_labels", "normalize", "check_shrink", "resize_images",
           "select_classes", "train_val_split", "stratified_split", "VAL_SPLIT_SEED", "prepare_data",
           "prepare_test",
           "AUGMENTATIONS", "augmentation", "random_crop", "random_hflip", "random_erase", "crop_and_flip", "iterate_batches"]
