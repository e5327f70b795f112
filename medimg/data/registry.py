"""Every dataset medimg knows by name: what it is, where it comes from, and which images it shares.

A :class:`DatasetSpec` is a record, not a loader: :mod:`medimg.data.sources` turns one into
records of images. Three kinds are registered:

* ``medmnist`` — the MedMNIST v2/v3 2D subsets, read from the official ``{flag}.npz`` /
  ``{flag}_{size}.npz`` files in the data directory (and downloaded when online);
* ``folder`` — image folders (``images/<class>/...`` plus an optional ``labels.csv``): the
  ones staged in ``../shared/data`` and the paper's nine datasets, which a user downloads
  and arranges that way (``obtain`` says how);
* ``synthetic`` — generated images with a learnable signal, for fast tests.

``lineage`` names the original image collections a dataset is made from, so that pooling or
chaining two datasets that share images can be refused (:mod:`medimg.data.lineage`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medimg.errors import MedimgError

Modality = Literal["grey", "colour"]
Task = Literal["multiclass", "binary", "ordinal", "multilabel"]

MEDMNIST_CITATION = (
    "Yang J, Shi R, Wei D, Liu Z, Zhao L, Ke B, Pfister H, Ni B. MedMNIST v2 - A large-scale lightweight "
    "benchmark for 2D and 3D biomedical image classification. Scientific Data 10, 41 (2023)."
)
MEDMNIST_SIZES = (28, 64, 128, 224)
# the keys in references.bib of each dataset's papers, for {cite} in the book (a MedMNIST set: MedMNIST v2 and its
# source collection's paper); tests/study/test_references.py checks that each key is in references.bib
BIBKEYS = {
    "breastmnist": ("yang2023medmnist", "aldhabyani2020busi"),
    "pneumoniamnist": ("yang2023medmnist", "kermany2018identifying"),
    "retinamnist": ("yang2023medmnist", "liu2022deepdrid"),
    "busi_256": ("aldhabyani2020busi",),
    "iq_othnccd_lung_ct": ("alyasriy2021iqothnccd", "alyasriy2020lung"),
    "ham10000_224": ("tschandl2018ham10000",),
    "ham10000_224_large": ("tschandl2018ham10000",),
    "eye_diseases_fundus_400": ("doddi2023eyediseases", "odir2019", "cuadros2009eyepacs"),
    "bccd_wbc_640": ("bccd2017",),
}


def cite_role(name: str) -> str:
    """`` {cite}`a,b` `` for dataset ``name``'s papers in references.bib (MedMNIST v2 for any MedMNIST set), or ""."""
    keys = BIBKEYS.get(name) or (("yang2023medmnist",) if name in _MEDMNIST else ())
    return f" {{cite}}`{','.join(keys)}`" if keys else ""


@dataclass(frozen=True)
class Lineage:
    """One original image collection a dataset draws on.

    ``part`` is ``None`` when the dataset may hold any image of the collection; a named part
    is a subset known to be disjoint from every other named part of the same collection.
    """

    collection: str
    part: str | None = None

    def overlaps(self, other: "Lineage") -> bool:
        if self.collection != other.collection:
            return False
        return self.part is None or other.part is None or self.part == other.part

    def __str__(self) -> str:
        return self.collection if self.part is None else f"{self.collection}[{self.part}]"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Literal["medmnist", "folder", "synthetic"]
    modality: Modality
    description: str
    citation: str
    licence: str
    classes: tuple[str, ...] | None = None  # None: discovered from the folder
    task: Task = "multiclass"
    location: str | None = None  # folder name under the data dir; MedMNIST flag for npz files
    lineage: tuple[Lineage, ...] = ()
    obtain: str = ""  # where to get it and how to lay it out, for datasets not staged here
    group_column: str | None = None  # labels.csv column whose rows must stay in one split
    caveats: tuple[str, ...] = ()
    paper: bool = False  # one of the nine datasets of arXiv 2407.05592
    intensity: str = "auto"  # how images stored beyond 8 bits become pixels (medimg.data.intensity)
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def channels(self) -> int:
        return 1 if self.modality == "grey" else 3


# --- MedMNIST 2D -------------------------------------------------------------------------------
# Labels and tasks follow medmnist/info.py; lineage names the source collections so that, e.g.,
# BreastMNIST (made from BUSI) is never chained with a BUSI folder.
_MEDMNIST = {
    "pathmnist": ("colour", "multiclass", ("adipose", "background", "debris", "lymphocytes", "mucus",
                  "smooth muscle", "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"), "colon pathology (NCT-CRC-HE-100K, CRC-VAL-HE-7K)",
                  "Kather JN et al. PLOS Medicine 16(1):e1002730 (2019).", ("nct-crc-he",), "CC BY 4.0"),
    "chestmnist": ("grey", "multilabel", ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass",
                   "nodule", "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
                   "pleural", "hernia"), "chest X-ray (NIH ChestX-ray14)",
                   "Wang X et al. ChestX-ray8. CVPR 2017.", ("nih-chestxray14",), "CC BY 4.0"),
    "dermamnist": ("colour", "multiclass", ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
                   "dermatoscopy (HAM10000)", "Tschandl P, Rosendahl C, Kittler H. Scientific Data 5, 180161 (2018).",
                   ("ham10000",), "CC BY-NC 4.0"),
    "octmnist": ("grey", "multiclass", ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 "retinal OCT", "Kermany DS et al. Cell 172(5):1122-1131 (2018).", ("kermany-oct",), "CC BY 4.0"),
    "pneumoniamnist": ("grey", "binary", ("normal", "pneumonia"), "paediatric chest X-ray",
                       "Kermany DS et al. Cell 172(5):1122-1131 (2018).", ("kermany-cxr",), "CC BY 4.0"),
    "retinamnist": ("colour", "ordinal", ("0", "1", "2", "3", "4"), "fundus photographs, diabetic-retinopathy grade",
                    "Liu R et al. DeepDRiD. Patterns 3(6):100512 (2022).", ("deepdrid",), "CC BY 4.0"),
    "breastmnist": ("grey", "binary", ("malignant", "normal, benign"), "breast ultrasound (made from BUSI)",
                    "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. "
                    "Data in Brief 28, 104863 (2020).", ("busi",), "CC BY 4.0"),
    "bloodmnist": ("colour", "multiclass", ("basophil", "eosinophil", "erythroblast", "immature granulocytes",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"), "blood cell microscopy",
                   "Acevedo A et al. Data in Brief 30, 105474 (2020).", ("acevedo-blood",), "CC BY 4.0"),
    "tissuemnist": ("grey", "multiclass", ("collecting duct, connecting tubule", "distal convoluted tubule",
                    "glomerular endothelial cells", "interstitial endothelial cells", "leukocytes", "podocytes",
                    "proximal tubule segments", "thick ascending limb"), "kidney cortex microscopy (BBBC051)",
                    "Ljosa V et al. Nature Methods 9, 637 (2012).", ("bbbc051",), "CC BY 4.0"),
}
_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
           "lung-left", "lung-right", "pancreas", "spleen")
for _view in ("a", "c", "s"):
    _MEDMNIST[f"organ{_view}mnist"] = ("grey", "multiclass", _ORGANS, f"abdominal CT, {dict(a='axial', c='coronal', s='sagittal')[_view]} view (LiTS)",
                                       "Bilic P et al. The Liver Tumor Segmentation Benchmark (LiTS). Medical Image Analysis 84 (2023).",
                                       ("lits",), "CC BY 4.0")


def _medmnist_spec(flag: str) -> DatasetSpec:
    modality, task, classes, what, source_cite, lineage, licence = _MEDMNIST[flag]
    return DatasetSpec(
        name=flag, kind="medmnist", modality=modality, task=task, classes=classes, location=flag,
        description=f"MedMNIST {flag}: {what}; official train/val/test split",
        citation=f"{MEDMNIST_CITATION} Source data: {source_cite}", licence=licence,
        lineage=tuple(Lineage(c) for c in lineage),
        obtain=(f"downloaded automatically when online, or put the official {flag}.npz (28 px) or "
                f"{flag}_{{64,128,224}}.npz from https://zenodo.org/records/10519652 in the data directory"),
    )


HAM_CITE = ("Tschandl P, Rosendahl C, Kittler H. The HAM10000 dataset, a large collection of multi-source "
            "dermatoscopic images of common pigmented skin lesions. Scientific Data 5, 180161 (2018). doi:10.7910/DVN/DBW86T")
BUSI_CITE = ("Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. "
             "Data in Brief 28, 104863 (2020). doi:10.1016/j.dib.2019.104863")
IQ_CITE = ("Alyasriy H, AL-Huseiny M. The IQ-OTH/NCCD lung cancer dataset. Mendeley Data (2021). doi:10.17632/bhmdr45bh2; "
           "Al-Yasriy HF et al. Diagnosis of Lung Cancer Based on CT Scans Using CNN. IOP Conf. Ser.: Mater. Sci. Eng. 928, 022035 (2020).")
ODIR_CITE = "Peking University. International Competition on Ocular Disease Intelligent Recognition (ODIR-2019)."
EYEPACS_CITE = ("Cuadros J, Bresnick G. EyePACS: an adaptable telemedicine system for diabetic retinopathy screening. "
                "J Diabetes Sci Technol 3(3):509-516 (2009); Kaggle Diabetic Retinopathy Detection (2015).")

_FOLDER_LAYOUT = "arranged as <data dir>/{name}/images/<class>/<image files> (an optional labels.csv with path,label)"

# --- image folders staged in ../shared/data ---------------------------------------------------
_STAGED = [
    DatasetSpec(
        name="busi_256", kind="folder", modality="grey", location="busi_256",
        classes=("benign", "malignant", "normal"),
        description="BUSI breast ultrasound, all 780 images squashed to 256x256 (stored RGB, grey content)",
        citation=BUSI_CITE, licence="unclear; research use with citation",
        lineage=(Lineage("busi"),),
        extra={"paper_dataset": "busi"},  # the paper's dataset these images are (all 780, resized)
        caveats=("benign (433).png and malignant (145).png are byte-identical, so one image carries two labels",
                 "near-duplicates, axillary images and images with calipers are reported (Pawlowska et al. 2023)",
                 "BreastMNIST is made from the same images"),
    ),
    DatasetSpec(
        name="iq_othnccd_lung_ct", kind="folder", modality="grey", location="iq_othnccd_lung_ct",
        classes=("benign", "malignant", "normal"),
        description="IQ-OTH/NCCD lung cancer CT slices, a 520-image subset",
        citation=IQ_CITE, licence="CC BY 4.0 (unverified)", lineage=(Lineage("iq-othnccd", "medimg-520"),),
        extra={"paper_dataset": "iq_othnccd"},  # a subset of the paper's dataset
        caveats=("no patient IDs and several slices per patient: random splits leak patient identity",
                 "24 files are byte-identical to another of the same class"),
    ),
    DatasetSpec(
        name="ham10000_224", kind="folder", modality="colour", location="ham10000_224",
        classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
        description="HAM10000 dermoscopy, 540 images at 224x224, one per lesion",
        citation=HAM_CITE, licence="CC BY-NC 4.0", group_column="lesion_id",
        lineage=(Lineage("ham10000", "medimg-540-lesions"),),
        caveats=("several lesions can come from one patient and HAM10000 has no patient ID",),
    ),
    DatasetSpec(
        name="ham10000_224_large", kind="folder", modality="colour", location="ham10000_224_large",
        classes=("akiec", "bcc", "bkl", "mel", "nv"),
        description="HAM10000 dermoscopy, 1901 images at 224x224, lesion-disjoint from ham10000_224 (no df, vasc)",
        citation=HAM_CITE, licence="CC BY-NC 4.0", group_column="lesion_id",
        lineage=(Lineage("ham10000", "medimg-1901-lesions"),),
        caveats=("lesion-disjoint from ham10000_224, but patient-level overlap cannot be ruled out",
                 "5 of the 7 classes, nv-heavy"),
    ),
    DatasetSpec(
        name="eye_diseases_fundus_400", kind="folder", modality="colour", location="eye_diseases_fundus_400",
        classes=("cataract", "diabetic_retinopathy", "glaucoma", "normal"),
        description="Fundus photographs, 792 at 400x400, one per patient, from ODIR-5K and EyePACS",
        citation=f"G. V. Doddi, Eye Diseases Classification, Kaggle; {ODIR_CITE} {EYEPACS_CITE}",
        licence="unverified; research only, non-commercial", group_column="patient_id",
        lineage=(Lineage("odir", "medimg-eye-diseases-792"), Lineage("eyepacs", "medimg-eye-diseases-792")),
        caveats=("source-confounded: every diabetic_retinopathy image is EyePACS and every other class ODIR, "
                 "so a model can learn the camera instead of the disease",),
    ),
    DatasetSpec(
        name="bccd_wbc_640", kind="folder", modality="colour", location="bccd_wbc_640",
        classes=("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"),
        description="BCCD blood smear photographs, 352 at 640x480, labelled by white-cell type",
        citation=("BCCD Dataset, https://github.com/Shenggan/BCCD_Dataset (2017), from https://github.com/cosmicad/dataset; "
                  "labels from https://github.com/dhruvp/wbc-classification"),
        licence="images MIT; labels unverified", lineage=(Lineage("bccd"),),
        caveats=("strong class imbalance (NEUTROPHIL 59%, MONOCYTE 20 images)",
                 "neighbouring images may come from one slide, so random splits may leak the slide"),
    ),
]

# --- the paper's nine datasets (arXiv 2407.05592), to be downloaded by the user ------------------
_PAPER = [
    ("vindr_cxr", "grey", "VinDr-CXR chest X-rays", (Lineage("vindr-cxr"),),
     "Nguyen HQ et al. VinDr-CXR: An open dataset of chest X-rays with radiologist's annotations. Scientific Data 9, 429 (2022).",
     "PhysioNet credentialed licence", "https://physionet.org/content/vindr-cxr/ (credentialed access); export DICOM to PNG"),
    ("oasis_mri", "grey", "OASIS brain MRI slices, dementia stage", (Lineage("oasis"),),
     "Marcus DS et al. Open Access Series of Imaging Studies (OASIS). J Cogn Neurosci 19(9):1498-1507 (2007).",
     "OASIS data use agreement", "https://sites.wustl.edu/oasisbrains/ (or the Kaggle 'OASIS Alzheimer's' slice export)"),
    ("ct_kidney", "grey", "CT kidney: normal, cyst, tumour, stone", (Lineage("ct-kidney"),),
     "Islam MN et al. Vision transformer and explainable transfer learning models for auto detection of kidney cyst, stone "
     "and tumor from CT-radiography. Scientific Reports 12, 11440 (2022).",
     "see the Kaggle page", "https://www.kaggle.com/datasets/nazmul0087/ct-kidney-dataset-normal-cyst-tumor-and-stone"),
    ("busi", "grey", "BUSI breast ultrasound at original resolution", (Lineage("busi"),), BUSI_CITE,
     "unclear; research use with citation", "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset (drop the *_mask.png files)"),
    ("iq_othnccd", "grey", "IQ-OTH/NCCD lung cancer CT, all 1097 images", (Lineage("iq-othnccd"),), IQ_CITE,
     "CC BY 4.0", "https://data.mendeley.com/datasets/bhmdr45bh2"),
    ("odir2019", "colour", "ODIR-2019 fundus photographs, eight diagnostic categories", (Lineage("odir"),), ODIR_CITE,
     "research use under the ODIR terms", "https://odir2019.grand-challenge.org/ (one folder per diagnostic category)"),
    ("isic2019", "colour", "ISIC 2019 dermoscopy (includes HAM10000)", (Lineage("ham10000"), Lineage("bcn20000"), Lineage("msk-isic")),
     "Tschandl P et al. (2018); Codella N et al. (2017); Combalia M et al. BCN20000 (2019).", "CC BY-NC 4.0",
     "https://challenge.isic-archive.com/data/#2019 (sort by the ground-truth CSV into class folders)"),
    ("kvasir_v2", "colour", "Kvasir v2 GI endoscopy, eight classes", (Lineage("kvasir"),),
     "Pogorelov K et al. KVASIR: A multi-class image dataset for computer aided gastrointestinal disease detection. MMSys 2017.",
     "research and educational use with citation", "https://datasets.simula.no/kvasir/ (kvasir-dataset-v2, already one folder per class)"),
    ("eyepacs", "colour", "EyePACS diabetic-retinopathy grades 0-4", (Lineage("eyepacs"),), EYEPACS_CITE,
     "Kaggle competition terms (non-commercial research)",
     "https://www.kaggle.com/c/diabetic-retinopathy-detection (sort trainLabels.csv into folders 0..4)"),
]

# images each of the nine holds as its publication or download page states it (None: the export varies); only
# `medimg study --plan` reads these, to size runs on data not here
PUBLISHED_IMAGES = {"vindr_cxr": 18000, "oasis_mri": None, "ct_kidney": 12446, "busi": 780, "iq_othnccd": 1097,
                    "odir2019": 7000, "isic2019": 25331, "kvasir_v2": 8000, "eyepacs": 35126}

# test accuracy the paper reports for the datasets staged here (its TL: ImageNet Xception at 299 px; its SSL: SimCLR
# ResNet-50 at 224 px; one run each), as issue #20 quotes the paper's text (offline here: not re-read from the PDF)
PAPER_REPORTED = {"busi": {"ssl": 0.90}, "iq_othnccd": {"tl": 0.954, "ssl": 0.9722}}

REGISTRY: dict[str, DatasetSpec] = {}
for _flag in _MEDMNIST:
    REGISTRY[_flag] = _medmnist_spec(_flag)
for _spec in _STAGED:
    REGISTRY[_spec.name] = _spec
for _name, _mod, _what, _lin, _cite, _lic, _url in _PAPER:
    REGISTRY[_name] = DatasetSpec(
        name=_name, kind="folder", modality=_mod, location=_name, description=_what, citation=_cite, licence=_lic,
        lineage=_lin, paper=True, task="ordinal" if _name == "eyepacs" else "multiclass",
        obtain=f"download from {_url}, {_FOLDER_LAYOUT.format(name=_name)}",
        extra={"published_images": PUBLISHED_IMAGES[_name], "paper_reported": PAPER_REPORTED.get(_name, {})},
    )
for _mod in ("grey", "colour"):
    REGISTRY[f"synthetic_{_mod}"] = DatasetSpec(
        name=f"synthetic_{_mod}", kind="synthetic", modality=_mod, classes=("disc", "square", "cross"),
        description=f"generated {_mod} images: a faint disc, square or cross in noise, deterministic from a seed",
        citation="generated by medimg.data.synthetic", licence="public domain", lineage=(Lineage(f"synthetic-{_mod}"),),
        obtain="generated on the fly; nothing to download",
    )


def register_folder(name: str, path, modality: Modality, *, description: str | None = None,
                    citation: str | None = None, licence: str | None = None, where: str = "") -> DatasetSpec:
    """Register a user's image folder under a short ``name`` (a study file's ``datasets`` entry).

    ``modality`` is what the study plans with (its SimCLR pool, its part of the book); decoding checks it
    against the images and refuses a mismatch rather than converting them. Registering the same name
    and folder again is a no-op; a registered name cannot be taken by another folder.
    """
    if not name.isidentifier() and not name.replace("-", "_").isidentifier():
        raise MedimgError(f"{where}: dataset name {name!r} must be a short word (letters, digits, _ or -): it names "
                          f"run folders and table rows")
    resolved = str(Path(path).resolve())
    spec = DatasetSpec(
        name=name, kind="folder", modality=modality, location=resolved,
        description=description or f"the user's image folder {resolved}", citation=citation or "user-supplied folder",
        licence=licence or "unknown", lineage=(Lineage(f"folder:{resolved}"),),
        obtain=f"{where} names {resolved}: put the folder there or fix its path",
        extra={"modality_from_images": True, "declared_modality": modality, "user": True, "where": where},
    )
    known = REGISTRY.get(name)
    if known is not None and (known.location, known.modality) != (resolved, modality):
        what = known.location if known.extra.get("user") else "a registered dataset"
        raise MedimgError(f"{where}: dataset name {name!r} is already {what}: choose another short name")
    REGISTRY[name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise MedimgError(
            f"unknown dataset {name!r}: run 'medimg datasets' for the registered names, or pass the path of an image folder"
        ) from None
