"""Clinical code groups the ranker's features are built from.

Each group lists ICD-10 prefixes (compared without dots, upper case, as the timeline
stores them), ICD-9 prefixes, SNOMED CT codes, LOINC codes and CPT ranges. A change to
any group changes what the features mean, so it must bump ``FEATURE_VERSION`` in
:mod:`plugin.rank.features`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plugin.timeline.model import Code


@dataclass(frozen=True, slots=True)
class Group:
    """A named code group; ``in`` tests one :class:`Code`."""

    name: str
    label: str  # words for reviewers
    icd10: tuple[str, ...] = ()
    icd9: tuple[str, ...] = ()
    snomed: frozenset[str] = frozenset()
    loinc: frozenset[str] = frozenset()
    cpt: tuple[tuple[int, int], ...] = ()

    def __contains__(self, code: Code) -> bool:
        if code.system == "icd10":
            return (
                code.code.replace(".", "").upper().startswith(self.icd10) if self.icd10 else False
            )
        if code.system == "icd9":
            return code.code.replace(".", "").startswith(self.icd9) if self.icd9 else False
        if code.system == "snomed":
            return code.code in self.snomed
        if code.system == "loinc":
            return code.code in self.loinc
        if code.system in ("cpt", "hcpcs") and code.code.isdigit():
            n = int(code.code)
            return any(lo <= n <= hi for lo, hi in self.cpt)
        return False

    def any_of(self, codes: Iterable[Code]) -> bool:
        return any(c in self for c in codes)


def _g(
    name: str,
    label: str,
    icd10: str = "",
    snomed: str = "",
    icd9: str = "",
    loinc: str = "",
    cpt: tuple[tuple[int, int], ...] = (),
) -> Group:
    return Group(
        name=name,
        label=label,
        icd10=tuple(icd10.split()),
        icd9=tuple(icd9.split()),
        snomed=frozenset(snomed.split()),
        loinc=frozenset(loinc.split()),
        cpt=cpt,
    )


# --- risk factors and history (conditions dated up to the index) ---------------------------
RISK_FACTORS: tuple[Group, ...] = (
    _g("af", "atrial fibrillation", "I48", "49436004 5370000 314208002", "42731"),
    _g("htn", "hypertension", "I10 I11 I12 I13 I15 I16", "38341003 59621000", "401 402 403"),
    _g("dm", "diabetes", "E08 E09 E10 E11 E13", "44054006 73211009 46635009", "250"),
    _g("hld", "hyperlipidaemia", "E78", "55822004 13644009 267432004", "272"),
    _g(
        "smoking",
        "smoker",
        "F17 Z720 Z87891",
        "77176002 449868002 65568007 8517006 56294008",
        "3051",
    ),
    _g("ckd", "chronic kidney disease", "N18", "709044004 431855005 431856006 433144002", "585"),
    _g(
        "prior_stroke",
        "prior stroke/TIA",
        "I60 I61 I62 I63 I64 I69 G45 Z8673",
        "230690007 422504002 266257000 429993008 275526006 432504007",
        "430 431 433 434 435 438 V1254",
    ),
    _g(
        "cad",
        "coronary artery disease",
        "I20 I21 I22 I23 I24 I25",
        "53741008 22298006 414545008",
        "410 411 412 413 414",
    ),
    _g(
        "cancer_hx",
        "cancer history",
        "C Z85",
        "363346000 372087000 429740004 94381002",
        "14 15 16 17 18 19 20 V10",
    ),
)
CHRONIC: tuple[Group, ...] = (
    _g("chf", "heart failure", "I50", "42343007 84114007", "428"),
    _g("copd", "COPD", "J44 J43", "13645005 195951007", "491 492 496"),
    _g("metastatic", "metastatic cancer", "C77 C78 C79 C80", "94381002 128462008", "196 197 198"),
    _g("dementia", "dementia", "F01 F02 F03 G30", "52448006 26929004", "290 2941 331"),
)
TERMINAL = _g(
    "terminal", "hospice/palliative care", "Z515", "182964004 305336008 385763009", "V667"
)
TRAUMA = _g("trauma", "injury/trauma", "S T0 T1 T2 T3 V W X Y", "417746004", "8 9")
STROKE_HISTORY_CODE = _g(
    "stroke_history_code", "history-of-stroke code", "I69 Z8673", "429993008 275526006", "438 V1254"
)

DECLINED = _g("declined", "patient declined", "Z53", "183944003")
NONADHERENCE = _g("nonadherence", "non-adherence", "Z911", "129834002")

# --- presenting symptoms (diagnoses of the index encounter) --------------------------------
SYMPTOMS: tuple[Group, ...] = (
    _g(
        "dizziness",
        "dizziness",
        "R42 H810 H811 H812 H813 H818 H819 H83",
        "404640003 399153001 386705008 111541001",
        "7804 386",
    ),
    _g("headache", "headache", "R51 G43 G44", "25064002 37796009 398057008", "7840 346"),
    _g("abdominal_pain", "abdominal pain", "R10", "21522001 102614006 301754002", "789"),
    _g("chest_pain", "chest pain", "R07", "29857009 274668005", "7865"),
    _g("fever", "fever", "R50", "386661006", "7806"),
    _g("back_pain", "back pain", "M54", "161891005 279039007", "724"),
    _g("syncope", "syncope", "R55", "271594007", "7802"),
    _g("altered_mental", "altered mental status", "R4182 R410 R40", "419284004", "7809"),
    _g("dyspnoea", "shortness of breath", "R060 R06", "267036007", "7860"),
    _g("fluid_electrolyte", "fluid/electrolyte disorder", "E86 E87", "34095006", "276"),
    _g("weakness_fatigue", "weakness/fatigue", "R53 R531", "13791008 84229001", "7807"),
    _g("fall", "fall", "W19 R296 W0 W1", "1912002", "E888"),
)

# --- dangerous diagnoses (outcome groups; the missed-diagnosis target list) ---------------
TARGETS: tuple[Group, ...] = (
    _g(
        "stroke",
        "stroke",
        "I60 I61 I62 I63 I64 G45",
        "230690007 422504002 266257000 432504007 274100004",
        "430 431 433 434 435 436",
    ),
    _g("mi", "myocardial infarction", "I21 I22", "22298006 57054005 401303003 401314000", "410"),
    _g("pe", "pulmonary embolism", "I26", "59282003", "4151"),
    _g("aortic_dissection", "aortic dissection", "I710", "308546005", "4410"),
    _g("sepsis", "sepsis", "A40 A41 R652 A419", "91302008 76571007", "0389 99591 99592"),
    _g("meningitis", "meningitis", "G00 G01 G02 G03 A390 A87", "7180009 192644005", "320 321 322"),
    _g("appendicitis", "appendicitis", "K35 K36 K37", "74400008 85189001", "540 541 542"),
    _g(
        "spinal_epidural_abscess",
        "spinal epidural abscess",
        "G061",
        "262999004 79908006",
        "3240 3241",
    ),
    _g(
        "colorectal_cancer", "colorectal cancer", "C18 C19 C20 C21", "363406005 93761005", "153 154"
    ),
    _g("lung_cancer", "lung cancer", "C34", "93880001 363358000 254637007", "162"),
    _g("breast_cancer", "breast cancer", "C50", "254837009 372064008", "174"),
    _g("prostate_cancer", "prostate cancer", "C61", "399068003 254900004", "185"),
    _g("hypothyroidism", "hypothyroidism", "E03 E890", "40930008 83664006", "244"),
)
TARGET_NAMES: tuple[str, ...] = (*(g.name for g in TARGETS), "other")
TARGET_LABELS: dict[str, str] = {g.name: g.label for g in TARGETS} | {"other": "other"}
CANCERS = frozenset({"colorectal_cancer", "lung_cancer", "breast_cancer", "prostate_cancer"})

# --- imaging ---------------------------------------------------------------------------------
HEAD_IMAGING = _g(
    "head_imaging",
    "head CT/MRI",
    "",
    "303653007 816077007 396205005 241601008 408754009",
    loinc="24725-4 30799-1 24590-2 24556-3 30657-1 36813-4 36554-4 42274-1 24558-9",
    cpt=((70450, 70470), (70496, 70498), (70540, 70553)),
)
IMAGING = _g(
    "imaging",
    "imaging",
    "",
    "363679005 77477000 168537006 71651007 241615005",
    loinc="24627-2 36643-5 24725-4 30799-1 24590-2 24604-1 26346-7 24558-9",
    cpt=((70010, 79999),),
)
_HEAD_WORDS = ("head", "brain", "cranial", "skull")
_IMAGING_WORDS = (
    "ct ",
    "ct-",
    "cta",
    "mri",
    "mr ",
    "x-ray",
    "xray",
    "radiograph",
    "ultrasound",
    "tomograph",
    "magnetic resonance",
    "imaging",
    "scan",
)


def is_imaging(codes: Iterable[Code], text: str | None) -> tuple[bool, bool]:
    """(any imaging, head CT/MRI) from an event's codes, with its display text as fallback."""
    cs = tuple(codes)
    head = HEAD_IMAGING.any_of(cs)
    img = head or IMAGING.any_of(cs)
    if text:
        t = text.lower() + " "
        word_img = any(w in t for w in _IMAGING_WORDS)
        img = img or word_img
        head = head or (word_img and any(w in t for w in _HEAD_WORDS))
    return img, head


# --- vital signs and labs (LOINC) ------------------------------------------------------------
VITALS: dict[str, frozenset[str]] = {
    "temp": frozenset({"8310-5", "8331-1", "8332-9", "8333-7", "8328-7"}),
    "hr": frozenset({"8867-4", "8889-8"}),
    "sbp": frozenset({"8480-6", "8459-0"}),
    "dbp": frozenset({"8462-4", "8453-3"}),
    "spo2": frozenset({"59408-5", "2708-6", "20564-1"}),
    "rr": frozenset({"9279-1"}),
}
VITAL_CODES = frozenset().union(*VITALS.values()) | {"85354-9", "8716-3", "29463-7", "8302-2"}
LABS: dict[str, frozenset[str]] = {
    "wbc": frozenset({"6690-2", "26464-8", "33256-9"}),
    "lactate": frozenset({"2524-7", "32693-4", "2518-9", "32133-1"}),
    "troponin": frozenset({"6598-7", "10839-9", "89579-7", "49563-0", "67151-1", "42757-5"}),
    "crp": frozenset({"1988-5", "30522-7"}),
    "hb": frozenset({"718-7", "30313-1", "30350-3", "30352-9"}),
    "mcv": frozenset({"787-2", "30428-7"}),
    "tsh": frozenset({"3016-3", "11579-0", "11580-8"}),
    "psa": frozenset({"2857-1", "10886-0"}),
    "ddimer": frozenset({"48065-7", "48066-5", "7799-0"}),
    "glucose": frozenset({"2345-7", "2339-0", "15074-8", "14749-6"}),
}
# results whose danger is a low value: their feature is the value over the lower limit
LOW_SIDE_LABS = frozenset({"hb", "mcv"})
FIT_FOBT = frozenset(
    {
        "2335-8",
        "14563-1",
        "14564-9",
        "14565-6",
        "29771-3",
        "56490-6",
        "56491-4",
        "57803-9",
        "57804-7",
        "59841-4",
        "38526-7",
        "38527-5",
        "50196-0",
        "7905-3",
        "27396-1",
        "12503-9",
    }
)
ABNORMAL_FLAGS = frozenset(
    {"H", "HH", "L", "LL", "A", "AA", "POS", "DET", "ABN", "HU", "LU", "<", ">"}
)
POSITIVE_FLAGS = frozenset({"POS", "DET", "A", "AA", "ABN", "H", "HH"})
THYROID_RX = frozenset({"10582", "966247", "966222", "966224", "892246", "10814", "6658"})

# --- what each trigger can have missed (the missed-diagnosis head's candidates) ------------
# A finding's suggestions come only from its rule's targets: a TSH finding suggests only
# hypothyroidism, a SPADE dizziness finding only stroke. Triggers whose miss is outside the
# target list (haematuria, AFP) suggest "other". Triggers not listed keep every target.
_ACUTE = frozenset({"stroke", "mi", "pe", "aortic_dissection", "sepsis", "meningitis",
                    "appendicitis", "spinal_epidural_abscess"})
TRIGGER_TARGETS: dict[str, frozenset[str]] = {
    "SP-1": frozenset({"stroke"}),
    "SP-2": frozenset({"stroke"}),
    "SP-3": frozenset({"appendicitis", "sepsis"}),
    "SPADE-SEPSIS": frozenset({"sepsis", "meningitis"}),
    "ED-1": _ACUTE,
    "ED-2": _ACUTE,
    "ED-3": _ACUTE,
    "ED-4": _ACUTE,
    "PC-1": _ACUTE | {"colorectal_cancer", "lung_cancer"},
    "PC-3": _ACUTE | {"colorectal_cancer", "lung_cancer"},
    "PC-4": _ACUTE | {"colorectal_cancer", "lung_cancer"},
    "IP-1": _ACUTE,
    "IP-2": _ACUTE,
    "TR-1": frozenset({"colorectal_cancer"}),
    "TR-3": frozenset({"lung_cancer"}),
    "TR-4": frozenset({"other"}),
    "TR-5": frozenset({"breast_cancer"}),
    "TR-6": frozenset({"other"}),
    "TR-7": frozenset({"hypothyroidism"}),
}
