"""Code tables the synthetic population draws from (ICD-10-CM, SNOMED CT, LOINC, CPT, RxNorm).

Every LOINC and SNOMED code here passes its check digit (``tests/synth`` checks them with
:func:`plugin.rules.validators.check_code`). A diagnosis is ``(icd10, snomed, display)``;
``icd10`` is written with its dot, the writer may drop the dot (real feeds do both).
"""

from __future__ import annotations

from typing import NamedTuple

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFY = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DX_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


class Dx(NamedTuple):
    icd10: str | None
    snomed: str | None
    display: str


# --- chronic conditions (problem list) -----------------------------------------------------
CHRONIC: dict[str, Dx] = {
    "hypertension": Dx("I10", "38341003", "Essential hypertension"),
    "diabetes": Dx("E11.9", "44054006", "Type 2 diabetes mellitus"),
    "af": Dx("I48.91", "49436004", "Atrial fibrillation"),
    "hyperlipidaemia": Dx("E78.5", "55822004", "Hyperlipidemia"),
    "smoking": Dx("F17.210", "56294008", "Nicotine dependence, cigarettes"),
    "ckd": Dx("N18.30", "433144002", "Chronic kidney disease stage 3"),
    "cad": Dx("I25.10", "53741008", "Coronary arteriosclerosis"),
    "chf": Dx("I50.9", "42343007", "Congestive heart failure"),
    "copd": Dx("J44.9", "13645005", "Chronic obstructive pulmonary disease"),
    "hypothyroidism": Dx("E03.9", "40930008", "Hypothyroidism"),
    "cancer_history": Dx("Z85.3", "429740004", "Personal history of malignant neoplasm of breast"),
    "prostate_ca_history": Dx(
        "Z85.46", "429740004", "Personal history of malignant neoplasm of prostate"
    ),
    "stroke_history": Dx(
        "Z86.73", "275526006", "Personal history of cerebral infarction without residual deficit"
    ),
    "metastatic_cancer": Dx("C78.7", "94381002", "Secondary malignant neoplasm of liver"),
    "dementia": Dx("F03.90", "52448006", "Dementia"),
}
# a miscoded old stroke: the acute code copied forward onto a later admission
OLD_STROKE = Dx("I63.9", "432504007", "Cerebral infarction, unspecified")

# --- encounter diagnoses --------------------------------------------------------------------
DIZZINESS = [
    Dx("R42", "404640003", "Dizziness and giddiness"),
    Dx("H81.10", "111541001", "Benign paroxysmal vertigo, unspecified ear"),
    Dx("H81.399", None, "Other peripheral vertigo, unspecified ear"),
]
HEADACHE = [
    Dx("R51.9", "25064002", "Headache, unspecified"),
    Dx("G44.209", "398057008", "Tension-type headache, not intractable"),
    Dx("G43.909", "37796009", "Migraine, unspecified"),
]
STROKE = [
    Dx("I63.9", "432504007", "Cerebral infarction, unspecified"),
    Dx("I63.512", "432504007", "Cerebral infarction due to occlusion of left MCA"),
    Dx("I63.442", "432504007", "Cerebral infarction due to embolism of left cerebellar artery"),
    Dx("I61.9", "274100004", "Nontraumatic intracerebral hemorrhage, unspecified"),
    Dx("G45.9", "266257000", "Transient cerebral ischemic attack, unspecified"),
]
ABDOMINAL_PAIN = [
    Dx("R10.31", "301754002", "Right lower quadrant pain"),
    Dx("R10.9", "21522001", "Unspecified abdominal pain"),
    Dx("R10.84", "21522001", "Generalized abdominal pain"),
]
APPENDICITIS = Dx("K35.80", "74400008", "Unspecified acute appendicitis")
SEPSIS = Dx("A41.9", "91302008", "Sepsis, unspecified organism")
MI = Dx("I21.4", "401314000", "Non-ST elevation myocardial infarction")
PE = Dx("I26.99", "59282003", "Other pulmonary embolism without acute cor pulmonale")
CRC = Dx("C18.9", "363406005", "Malignant neoplasm of colon, unspecified")

FEVER = Dx("R50.9", "386661006", "Fever, unspecified")
UTI = Dx("N39.0", "68566005", "Urinary tract infection, site not specified")
WEAKNESS = Dx("R53.1", "13791008", "Weakness")
CHEST_PAIN = Dx("R07.9", "29857009", "Chest pain, unspecified")
DYSPNOEA = Dx("R06.00", "267036007", "Dyspnea, unspecified")
COUGH = Dx("R05.9", "49727002", "Cough, unspecified")

# benign ED complaints (background and look-alike index visits)
ED_BENIGN = [
    Dx("M54.50", "279039007", "Low back pain, unspecified"),
    Dx("S93.401A", "44465007", "Sprain of ankle, initial encounter"),
    Dx("S61.411A", "312608009", "Laceration of hand, initial encounter"),
    Dx("J06.9", "54150009", "Acute upper respiratory infection, unspecified"),
    Dx("A09", "25374005", "Infectious gastroenteritis and colitis, unspecified"),
    Dx("N23", "45816000", "Unspecified renal colic"),  # SNOMED renal colic (49650001 is dysuria)
    Dx("K08.89", "27355003", "Toothache"),
    Dx("L03.115", "128045006", "Cellulitis of right lower limb"),
]
# reasons for unplanned admissions unrelated to the index complaint
ADMIT_MEDICAL = [
    Dx("J18.9", "233604007", "Pneumonia, unspecified organism"),
    Dx("I50.9", "42343007", "Heart failure, unspecified"),
    Dx("J44.1", "195951007", "COPD with acute exacerbation"),
    Dx("K92.2", "74474003", "Gastrointestinal hemorrhage, unspecified"),
    Dx("L03.115", "128045006", "Cellulitis of right lower limb"),
    Dx("N39.0", "68566005", "Urinary tract infection, site not specified"),
    Dx("E87.1", "89627008", "Hypo-osmolality and hyponatremia"),
]
ADMIT_TRAUMA = [
    Dx("S72.001A", "5913000", "Fracture of neck of right femur, initial encounter"),
    Dx("S06.0X0A", "110030002", "Concussion without loss of consciousness, initial"),
    Dx("S32.009A", "207957008", "Fracture of lumbar vertebra, initial encounter"),
]
ADMIT_ELECTIVE = [
    Dx("M17.11", "239873007", "Unilateral primary osteoarthritis, right knee"),
    Dx("M16.11", "239872002", "Unilateral primary osteoarthritis, right hip"),
    Dx("K80.20", "235919008", "Calculus of gallbladder without obstruction"),
]
PC_ROUTINE = [
    Dx("Z00.00", "185349003", "Encounter for general adult medical examination"),
    Dx("Z00.01", "185349003", "General adult medical examination with abnormal findings"),
]
DECLINED = Dx("Z53.20", "183944003", "Procedure not carried out because of patient's decision")
NONADHERENCE = Dx("Z91.14", "129834002", "Patient's other noncompliance with medication regimen")
HOSPICE = Dx("Z51.5", "385763009", "Encounter for palliative care")
REFERRAL = (SNOMED, "3457005", "Patient referral")


class Lab(NamedTuple):
    loinc: str
    display: str
    unit: str
    low: float
    high: float
    decimals: int


LABS: dict[str, Lab] = {
    "hb": Lab("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.5, 1),
    "wbc": Lab("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4.5,
               11.0, 1),
    "plt": Lab("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400,
               0),
    "mcv": Lab("787-2", "MCV [Entitic volume] by Automated count", "fL", 80.0, 100.0, 0),
    "creat": Lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.3, 2),
    "glucose": Lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 0),
    "k": Lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 1),
    "na": Lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135, 145, 0),
    "a1c": Lab("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 1),
    "chol": Lab("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 0, 200, 0),
    "tsh": Lab("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 4.5, 2),
    "trop": Lab("10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ng/mL", 0,
                0.04, 2),
    "lactate": Lab("2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 0.5, 2.0, 1),
    "ddimer": Lab("48065-7", "Fibrin D-dimer FEU [Mass/volume] in Platelet poor plasma",
                  "ng/mL{FEU}", 0, 500, 0),
    "crp": Lab("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 0, 10, 1),
    "lipase": Lab("3040-3", "Lipase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 0,
                  60, 0),
    "ferritin": Lab("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "ng/mL", 30, 400, 0),
}
FIT = ("29771-3", "Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay")
FIT_POS = ("10828004", "Positive")
FIT_NEG = ("260385009", "Negative")

# vital signs: (loinc, display, ucum)
VITALS = {
    "temp": ("8310-5", "Body temperature", "Cel"),
    "hr": ("8867-4", "Heart rate", "/min"),
    "rr": ("9279-1", "Respiratory rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "bp": ("85354-9", "Blood pressure panel with all children optional", ""),
    "sbp": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "dbp": ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
}


class Imaging(NamedTuple):
    cpt: str
    loinc: str
    display: str


IMAGING: dict[str, Imaging] = {
    "ct_head": Imaging("70450", "24725-4", "CT Head WO contrast"),
    "mri_brain": Imaging("70551", "24590-2", "MR Brain WO contrast"),
    "ct_abdomen": Imaging("74177", "36813-4", "CT Abdomen and Pelvis W contrast IV"),
    "cta_chest": Imaging("71275", "24627-2", "CT Chest"),
    "xr_chest": Imaging("71046", "36643-5", "XR Chest 2 Views"),
}
# procedures (CPT)
PROC = {
    "colonoscopy": ("45378", "Colonoscopy, flexible; diagnostic"),
    "colonoscopy_biopsy": ("45380", "Colonoscopy, flexible; with biopsy"),
    "appendectomy": ("44970", "Laparoscopy, surgical, appendectomy"),
    "ecg": ("93000", "Electrocardiogram, routine ECG with at least 12 leads"),
    "echo": ("93306", "Echocardiography, transthoracic, complete"),
    "pci": ("92928", "Percutaneous transcatheter placement of intracoronary stent"),
    "knee": ("27447", "Arthroplasty, knee, condyle and plateau (total knee arthroplasty)"),
    "hip": ("27130", "Arthroplasty, acetabular and proximal femoral (total hip arthroplasty)"),
    "chole": ("47562", "Laparoscopy, surgical; cholecystectomy"),
    "hip_fix": ("27236", "Open treatment of femoral fracture, proximal end, neck"),
    "thrombolysis": ("37195", "Thrombolysis, cerebral, by intravenous infusion"),
}
# imaging conclusion codes (SNOMED)
NORMAL = ("17621005", "Normal")
INFARCT = ("432504007", "Cerebral infarction")

# medications: name -> (rxnorm SCD, display, rxnorm ingredient)
MEDS: dict[str, tuple[str, str, str]] = {
    "levothyroxine": ("966222", "Levothyroxine Sodium 0.075 MG Oral Tablet", "10582"),
    "lisinopril": ("314076", "lisinopril 10 MG Oral Tablet", "29046"),
    "metformin": ("861007", "metformin hydrochloride 500 MG Oral Tablet", "6809"),
    "atorvastatin": ("617312", "atorvastatin 10 MG Oral Tablet", "83367"),
    "apixaban": ("1364430", "apixaban 5 MG Oral Tablet", "1364430"),
    "amlodipine": ("197361", "amlodipine 5 MG Oral Tablet", "17767"),
    "furosemide": ("310429", "furosemide 20 MG Oral Tablet", "4603"),
    "tiotropium": ("1552002", "tiotropium 18 MCG Inhalation Capsule", "69120"),
}
CHRONIC_MEDS = {
    "hypertension": "lisinopril",
    "diabetes": "metformin",
    "hyperlipidaemia": "atorvastatin",
    "af": "apixaban",
    "hypothyroidism": "levothyroxine",
    "chf": "furosemide",
    "copd": "tiotropium",
}
