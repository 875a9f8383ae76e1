"""Find the image/mask pairs of a dataset folder, in each dataset's layout as distributed.

Readers only list files (`RawSample`s, sorted by id); decoding happens in `preprocess`. Every
reader fails at once, with a message that says what to do, when the folder is missing, when
an image has no mask, when nothing is found or when two samples would share an id. One module
per layout family; this registry names them.

Image files are recognised by extension (.png .jpg .jpeg .bmp .tif .tiff .gif .dcm, any
case); hidden files (".name") and other files are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from unet_transfer.data.readers.busi import read_busi
from unet_transfer.data.readers.common import (
    IMAGE_EXTENSIONS,
    RawSample,
    is_image_file,
    list_images,
)
from unet_transfer.data.readers.folders import read_ecssd, read_folder, read_udiat, read_xpie
from unet_transfer.data.readers.montgomery import read_montgomery
from unet_transfer.errors import ConfigError

__all__ = ["DATASETS", "IMAGE_EXTENSIONS", "RawSample", "is_image_file", "list_images", "read_busi", "read_dataset",
           "read_ecssd", "read_folder", "read_montgomery", "read_udiat", "read_xpie"]


class DatasetInfo(NamedTuple):
    reader: Callable[..., list[RawSample]]
    description: str
    source: str


DATASETS: dict[str, DatasetInfo] = {
    "busi": DatasetInfo(
        read_busi,
        "BUSI, breast ultrasound images with lesion masks (Al-Dhabyani et al., Data in Brief 28, "
        "2020; 780 images: benign, malignant, normal)",
        "the authors' public release, 'Dataset_BUSI_with_GT' (search 'Breast Ultrasound Images "
        "Dataset', e.g. https://scholar.cu.edu.eg/?q=afahmy/pages/dataset or its Kaggle copy "
        "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset)",
    ),
    "udiat": DatasetInfo(
        read_udiat,
        "UDIAT breast ultrasound, 'Dataset B' (Yap et al., IEEE JBHI 2017; 163 images with "
        "lesion masks)",
        "the authors on request (Manchester Metropolitan University / UDIAT Diagnostic Centre, "
        "Sabadell; see http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php)",
    ),
    "montgomery": DatasetInfo(
        read_montgomery,
        "Montgomery County chest X-rays with left and right lung masks (Jaeger et al., QIMS "
        "2014; 138 images)",
        "the U.S. National Library of Medicine "
        "(https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets, "
        "file NLM-MontgomeryCXRSet.zip)",
    ),
    "ecssd": DatasetInfo(
        read_ecssd,
        "ECSSD, natural images with salient-object masks (Yan et al., CVPR 2013; 1,000 images)",
        "the CUHK project page "
        "(https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html: images.zip and "
        "ground_truth_mask.zip)",
    ),
    "xpie": DatasetInfo(
        read_xpie,
        "XPIE, natural images with salient-object masks (Xia et al., CVPR 2017; 10,000 images; "
        "the paper's pretraining set)",
        "the authors' project page (http://cvteam.net/projects/CVPR17-ELE/ELE.html, XPIE.zip)",
    ),
    "folder": DatasetInfo(
        read_folder,
        "a dataset of your own: an images folder and a masks folder with matching file names",
        "your own files: any images folder with a masks folder whose files have the same names "
        "(optionally with a suffix such as _mask); set dataset.images, dataset.masks and "
        "dataset.mask_suffix to match",
    ),
}


def read_dataset(name: str, root: str | os.PathLike, **options) -> list[RawSample]:
    """The samples of the registered dataset `name` (see DATASETS) read from `root`."""
    if name not in DATASETS:
        raise ConfigError(
            f"Unknown dataset reader {name!r}. Fix: use one of {sorted(DATASETS)} "
            "('folder' reads any images/ + masks/ pair)."
        )
    return DATASETS[name].reader(root, **options)
