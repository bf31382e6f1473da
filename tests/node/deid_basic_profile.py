"""Rows of DICOM PS3.15 Table E.1-1, Basic Profile column, typed in for the tests from the standard.

The node's table (``node/deid_profile_table.py``) is generated from a third-party transcription of the standard; the
tests must not take their expected answers from it, or a wrong row there (or a changed one) would pass every test.
These rows were typed from the standard's table (attribute keyword, tag, Basic Profile action code), read in a
second transcription made independently of the node's source (innolitics/dicom-standard,
``standard/confidentiality_profile_attributes.json``, an earlier edition); ``EDITION_ROWS`` holds the one row here
whose code changed between that edition and 2026c. They cover the attributes a CT or MR instance carries about the
patient, the people and places involved, the dates and the identifiers, plus the containers (sequences, signatures,
padding) that can hide them.

Action codes (PS3.15 E.1.1): D dummy, Z zero length (or dummy), X remove, K keep, U mapped UID; the compound codes
``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D`` and ``X/Z/U*`` leave the choice to the IOD's type for the attribute.
"""

from __future__ import annotations

#: (keyword, tag, Basic Profile action), typed from PS3.15 Table E.1-1.
BASIC_PROFILE: tuple[tuple[str, int, str], ...] = (
    ("AccessionNumber", 0x00080050, "Z"),
    ("AcquisitionComments", 0x00184000, "X"),
    ("AcquisitionDate", 0x00080022, "X/Z"),
    ("AcquisitionDateTime", 0x0008002A, "X/Z/D"),
    ("AcquisitionTime", 0x00080032, "X/Z"),
    ("AdditionalPatientHistory", 0x001021B0, "X"),
    ("AdmissionID", 0x00380010, "X"),
    ("AdmittingDiagnosesDescription", 0x00081080, "X"),
    ("Allergies", 0x00102110, "X"),
    ("BranchOfService", 0x00101081, "X"),
    ("ClinicalTrialProtocolID", 0x00120020, "D"),
    ("ClinicalTrialSponsorName", 0x00120010, "D"),
    ("ClinicalTrialSubjectID", 0x00120040, "D"),
    ("ConsultingPhysicianName", 0x0008009C, "Z"),
    ("ContentDate", 0x00080023, "Z/D"),
    ("ContentSequence", 0x0040A730, "D"),
    ("ContentTime", 0x00080033, "Z/D"),
    ("ContrastBolusAgent", 0x00180010, "Z/D"),
    ("CountryOfResidence", 0x00102150, "X"),
    ("DataSetTrailingPadding", 0xFFFCFFFC, "X"),
    ("DerivationDescription", 0x00082111, "X"),
    ("DeviceSerialNumber", 0x00181000, "X/Z/D"),
    ("DeviceUID", 0x00181002, "U"),
    ("DigitalSignaturesSequence", 0xFFFAFFFA, "X"),
    ("EthnicGroup", 0x00102160, "X"),
    ("FrameOfReferenceUID", 0x00200052, "U"),
    ("IconImageSequence", 0x00880200, "X"),
    ("IdentifyingComments", 0x00084000, "X"),
    ("ImageComments", 0x00204000, "X"),
    ("InstanceCreatorUID", 0x00080014, "U"),
    ("InstitutionAddress", 0x00080081, "X"),
    ("InstitutionName", 0x00080080, "X/Z/D"),
    ("InstitutionalDepartmentName", 0x00081040, "X"),
    ("IrradiationEventUID", 0x00083010, "U"),
    ("IssuerOfPatientID", 0x00100021, "X"),
    ("MAC", 0x04000404, "X"),
    ("MedicalAlerts", 0x00102000, "X"),
    ("MedicalRecordLocator", 0x00101090, "X"),
    ("MilitaryRank", 0x00101080, "X"),
    ("NameOfPhysiciansReadingStudy", 0x00081060, "X"),
    ("Occupation", 0x00102180, "X"),
    ("OperatorsName", 0x00081070, "X/Z/D"),
    ("OriginalAttributesSequence", 0x04000561, "X"),
    ("OtherPatientIDs", 0x00101000, "X"),
    ("OtherPatientIDsSequence", 0x00101002, "X"),
    ("OtherPatientNames", 0x00101001, "X"),
    ("PatientAddress", 0x00101040, "X"),
    ("PatientAge", 0x00101010, "X"),
    ("PatientBirthDate", 0x00100030, "Z"),
    ("PatientBirthName", 0x00101005, "X"),
    ("PatientBirthTime", 0x00100032, "X"),
    ("PatientComments", 0x00104000, "X"),
    ("PatientInsurancePlanCodeSequence", 0x00100050, "X"),
    ("PatientMotherBirthName", 0x00101060, "X"),
    ("PatientName", 0x00100010, "Z"),
    ("PatientReligiousPreference", 0x001021F0, "X"),
    ("PatientSex", 0x00100040, "Z"),
    ("PatientSize", 0x00101020, "X"),
    ("PatientTelecomInformation", 0x00102155, "X"),
    ("PatientTelephoneNumbers", 0x00102154, "X"),
    ("PatientWeight", 0x00101030, "X"),
    ("PerformedProcedureStepDescription", 0x00400254, "X"),
    ("PerformedProcedureStepID", 0x00400253, "X"),
    ("PerformingPhysicianName", 0x00081050, "X"),
    ("PersonName", 0x0040A123, "D"),
    ("PhysiciansOfRecord", 0x00081048, "X"),
    ("PregnancyStatus", 0x001021C0, "X"),
    ("ProtocolName", 0x00181030, "X/D"),
    ("ReasonForStudy", 0x00321030, "X"),
    ("ReferencedImageSequence", 0x00081140, "X/Z/U*"),
    ("ReferencedPatientSequence", 0x00081120, "X"),
    ("ReferencedSOPInstanceUID", 0x00081155, "U"),
    ("ReferencedStudySequence", 0x00081110, "X/Z"),
    ("ReferringPhysicianAddress", 0x00080092, "X"),
    ("ReferringPhysicianName", 0x00080090, "Z"),
    ("ReferringPhysicianTelephoneNumbers", 0x00080094, "X"),
    ("RegionOfResidence", 0x00102152, "X"),
    ("RequestAttributesSequence", 0x00400275, "X"),
    ("RequestedProcedureDescription", 0x00321060, "X/Z"),
    ("RequestingPhysician", 0x00321032, "X"),
    ("ResponsiblePerson", 0x00102297, "X"),
    ("ResultsComments", 0x40084000, "X"),
    ("SeriesDate", 0x00080021, "X/D"),
    ("SeriesDescription", 0x0008103E, "X"),
    ("SeriesInstanceUID", 0x0020000E, "U"),
    ("SeriesTime", 0x00080031, "X/D"),
    ("SmokingStatus", 0x001021A0, "X"),
    ("SOPInstanceUID", 0x00080018, "U"),
    ("SourceImageSequence", 0x00082112, "X/Z/U*"),
    ("StationName", 0x00081010, "X/Z/D"),
    ("StorageMediaFileSetUID", 0x00880140, "U"),
    ("StudyComments", 0x00324000, "X"),
    ("StudyDate", 0x00080020, "Z"),
    ("StudyDescription", 0x00081030, "X"),
    ("StudyID", 0x00200010, "Z"),
    ("StudyInstanceUID", 0x0020000D, "U"),
    ("StudyTime", 0x00080030, "Z"),
    ("SynchronizationFrameOfReferenceUID", 0x00200200, "U"),
    ("TextComments", 0x40004000, "X"),
    ("TimezoneOffsetFromUTC", 0x00080201, "X"),
    ("UID", 0x0040A124, "U"),
    ("VerifyingObserverName", 0x0040A075, "D"),
    ("VisitComments", 0x00384000, "X"),
)

#: Rows whose edition matters: Patient ID was Z up to the 2024 editions and is Z/D in 2026c, the edition the
#: node's table records; docs/deidentification-dicom.md gives Z/D as the standard's code.
EDITION_ROWS: tuple[tuple[str, int, str], ...] = (("PatientID", 0x00100020, "Z/D"),)

#: The node's documented departures from rows of the standard (docs/deidentification-dicom.md, "Deviations per
#: attribute"): keyword -> (tag, the standard's code, the code the node applies).
DOCUMENTED_DEVIATIONS: dict[str, tuple[int, str, str]] = {
    "RequestedSOPInstanceUID": (0x00001001, "U", "X"),
    "PatientName": (0x00100010, "Z", "Z"),
    "PatientID": (0x00100020, "Z/D", "Z/D"),
    "ContextGroupVersion": (0x00080106, "D", "K"),
    "TemplateVersion": (0x0040DB06, "X", "K"),
}
