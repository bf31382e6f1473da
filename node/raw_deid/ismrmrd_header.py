"""Rebuild an ISMRMRD XML header from its allow-list.

The source header is parsed into the ``ismrmrd.xsd`` classes and a new header is built field by
field: a field is copied only if :data:`HEADER_RULES` names its path and its value passes the check
of its kind. Every path of the schema has a row (a test walks the schema classes), so a field added
to a future schema is noticed, and dropped until someone adds a row for it.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any

import ismrmrd.xsd
from xsdata.exceptions import ConverterWarning, ParserError

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid.provenance import PROVENANCE_RULES, clean_provenance
from node.raw_deid.rules import DROP, Action, FieldRule, Kind, RuleSet, check

__all__ = ["HEADER_RULES", "rebuild_header"]

#: Manufacturer names as scanners write them (DICOM Manufacturer, vendor converters), and raw_data's own.
VENDORS = (
    "SIEMENS", "Siemens", "Siemens Healthcare", "Siemens Healthineers", "GE MEDICAL SYSTEMS", "GE",
    "GE Healthcare", "Philips", "Philips Medical Systems", "Philips Healthcare", "Canon Medical Systems",
    "TOSHIBA", "Hitachi", "FUJIFILM", "United Imaging Healthcare", "Bruker", "MeTAI exchange",
)
#: DICOM Body Part Examined defined terms (PS3.16 CID 4031, the common ones).
BODY_PARTS = (
    "ABDOMEN", "ABDOMENPELVIS", "ANKLE", "ARM", "BLADDER", "BRAIN", "BREAST", "CHEST", "CHESTABDOMEN",
    "CHESTABDPELVIS", "CSPINE", "ELBOW", "EXTREMITY", "FOOT", "HAND", "HEAD", "HEADNECK", "HEART", "HIP",
    "KIDNEY", "KNEE", "LEG", "LIVER", "LSPINE", "NECK", "ORBIT", "PANCREAS", "PELVIS", "PROSTATE", "SHOULDER",
    "SKULL", "SPINE", "TSPINE", "UTERUS", "WHOLEBODY", "WRIST",
)
SEQUENCE_TYPES = (
    "Flash", "FLASH", "GRE", "GradientEcho", "TrueFISP", "SSFP", "bSSFP", "SE", "SpinEcho", "TSE",
    "TurboSpinEcho", "FSE", "EPI", "Spiral", "Radial",
)
DEPENDENCY_TYPES = ("Noise", "noise", "SenMap", "SurfaceCoilCorrection", "calibration")

_X = "PS3.15"
_KEEP_ACQ = "acquisition parameter, needed to reconstruct or to interpret the data"


def _r(path: str, kind: Kind, action: Action, reason: str, **extra: Any) -> FieldRule:
    return FieldRule(path, kind, action, reason, **extra)


HEADER_RULES = RuleSet((
    _r("version", "integer", "keep", "schema version of the header, needed to read it"),
    _r("subjectInformation", "structure", "keep", "holds the pseudonym"),
    _r("subjectInformation/patientName", "text", "drop", f"{_X} Patient's Name (Z): the pseudonym is in patientID"),
    _r("subjectInformation/patientWeight_kg", "real", "drop", f"{_X} Patient's Weight (X)"),
    _r("subjectInformation/patientHeight_m", "real", "drop", f"{_X} Patient's Size (X)"),
    _r("subjectInformation/patientID", "pseudonym", "replace", f"{_X} Patient ID (Z): the node writes the pseudonym"),
    _r("subjectInformation/patientBirthdate", "date", "drop",
       f"{_X} Patient's Birth Date (Z); identifying on its own, so not shifted but removed, as in DICOM"),
    _r("subjectInformation/patientGender", "enumerated", "drop",
       f"{_X} Patient's Sex (Z) in the basic profile; the node applies no Retain Patient Characteristics option"),
    _r("studyInformation", "structure", "keep", "study date, time and UID"),
    _r("studyInformation/studyDate", "date", "shift", f"{_X} Study Date, Modified Dates option: shifted"),
    _r("studyInformation/studyTime", "time", "keep", "a whole-day shift leaves the time of day; DICOM TM is kept"),
    _r("studyInformation/studyID", "text", "drop", f"{_X} Study ID (Z)"),
    _r("studyInformation/accessionNumber", "identifier", "drop", f"{_X} Accession Number (Z): a RIS look-up key"),
    _r("studyInformation/referringPhysicianName", "text", "drop", f"{_X} Referring Physician's Name (Z)"),
    _r("studyInformation/studyDescription", "text", "drop", f"{_X} Study Description (X)"),
    _r("studyInformation/studyInstanceUID", "uid", "map",
       f"{_X} Study Instance UID (U), same mapping as DICOM: raw data and images of one exam link on the node"),
    _r("studyInformation/bodyPartExamined", "enumerated", "keep",
       "anatomy, to select training data; only DICOM defined terms, other text is dropped", values=BODY_PARTS),
    _r("measurementInformation", "structure", "keep", "series date, position, UIDs"),
    _r("measurementInformation/measurementID", "identifier", "map",
       "links a scan to its noise and reference scans; vendor exports build it from the device serial, patient "
       "and study numbers, so it is replaced by the node's keyed hash (consistent, like a UID)"),
    _r("measurementInformation/seriesDate", "date", "shift", f"{_X} Series Date, Modified Dates option: shifted"),
    _r("measurementInformation/seriesTime", "time", "keep", "a whole-day shift leaves the time of day"),
    _r("measurementInformation/patientPosition", "enumerated", "keep", "patient orientation (HFS...), needed to "
       "orient the images; schema enumeration"),
    _r("measurementInformation/relativeTablePosition", "structure", "keep", "table position"),
    _r("measurementInformation/relativeTablePosition/*", "real", "keep", "table position, mm"),
    _r("measurementInformation/initialSeriesNumber", "integer", "keep", "DICOM Series Number is kept by PS3.15"),
    _r("measurementInformation/protocolName", "text", "drop", f"{_X} Protocol Name (X/D)"),
    _r("measurementInformation/sequenceName", "text", "drop", "free text (vendor sequence file names)"),
    _r("measurementInformation/seriesDescription", "text", "drop", f"{_X} Series Description (X)"),
    _r("measurementInformation/measurementDependency", "structure", "keep",
       "which noise or calibration scan belongs to this one; an item with an unlisted type is dropped"),
    _r("measurementInformation/measurementDependency/dependencyType", "enumerated", "keep",
       "kind of dependency; only the listed codes", values=DEPENDENCY_TYPES),
    _r("measurementInformation/measurementDependency/measurementID", "identifier", "map",
       "mapped like measurementID, so the link survives"),
    _r("measurementInformation/seriesInstanceUIDRoot", "uid", "map",
       f"{_X} (U); mapped as a whole: series UIDs a converter derives from it will not equal the mapped DICOM "
       "series UIDs"),
    _r("measurementInformation/frameOfReferenceUID", "uid", "map", f"{_X} Frame of Reference UID (U)"),
    _r("measurementInformation/referencedImageSequence", "structure", "keep", "references to images"),
    _r("measurementInformation/referencedImageSequence/referencedSOPInstanceUID", "uid", "map",
       f"{_X} Referenced SOP Instance UID (U)"),
    _r("acquisitionSystemInformation", "structure", "keep", "the scanner class"),
    _r("acquisitionSystemInformation/systemVendor", "enumerated", "keep",
       "scanner make explains vendor differences in raw data; only the listed names", values=VENDORS),
    _r("acquisitionSystemInformation/systemModel", "text", "drop", "free text"),
    _r("acquisitionSystemInformation/systemFieldStrength_T", "real", "keep", _KEEP_ACQ),
    _r("acquisitionSystemInformation/relativeReceiverNoiseBandwidth", "real", "keep", _KEEP_ACQ),
    _r("acquisitionSystemInformation/receiverChannels", "integer", "keep", "coil count, needed by the reader"),
    _r("acquisitionSystemInformation/coilLabel", "structure", "drop", "coil names are free text"),
    _r("acquisitionSystemInformation/institutionName", "text", "drop", f"{_X} Institution Name (X/Z/D)"),
    _r("acquisitionSystemInformation/stationName", "text", "drop", f"{_X} Station Name (X/Z/D)"),
    _r("acquisitionSystemInformation/deviceID", "identifier", "map",
       f"like {_X} Device UID (U): same scanner stays recognisable on the node, not outside"),
    _r("acquisitionSystemInformation/deviceSerialNumber", "identifier", "drop", f"{_X} Device Serial Number (X/Z/D)"),
    _r("experimentalConditions", "structure", "keep", "required by the schema"),
    _r("experimentalConditions/H1resonanceFrequency_Hz", "integer", "keep", _KEEP_ACQ),
    _r("encoding", "structure", "keep", "the encoding: required to reconstruct"),
    _r("encoding/encodedSpace", "structure", "keep", "the acquired matrix"),
    _r("encoding/reconSpace", "structure", "keep", "the reconstructed matrix"),
    _r("encoding/*/matrixSize", "structure", "keep", "matrix size"),
    _r("encoding/*/matrixSize/*", "integer", "keep", _KEEP_ACQ),
    _r("encoding/*/fieldOfView_mm", "structure", "keep", "field of view"),
    _r("encoding/*/fieldOfView_mm/*", "real", "keep", _KEEP_ACQ),
    _r("encoding/encodingLimits", "structure", "keep", "loop counter ranges"),
    _r("encoding/encodingLimits/*", "structure", "keep", "one counter's range"),
    _r("encoding/encodingLimits/*/*", "integer", "keep", _KEEP_ACQ),
    _r("encoding/trajectory", "enumerated", "keep", "k-space trajectory; schema enumeration"),
    _r("encoding/trajectoryDescription", "structure", "drop",
       "identifier and comment are free text and its user parameters unnamed; the node reads Cartesian data, "
       "whose trajectory is the encoding itself"),
    _r("encoding/parallelImaging", "structure", "keep", "acceleration and calibration"),
    _r("encoding/parallelImaging/accelerationFactor", "structure", "keep", "acceleration"),
    _r("encoding/parallelImaging/accelerationFactor/*", "integer", "keep", _KEEP_ACQ),
    _r("encoding/parallelImaging/calibrationMode", "enumerated", "keep", "schema enumeration"),
    _r("encoding/parallelImaging/interleavingDimension", "enumerated", "keep", "schema enumeration"),
    _r("encoding/parallelImaging/multiband", "structure", "keep", "simultaneous multi-slice"),
    _r("encoding/parallelImaging/multiband/spacing", "structure", "keep", "slice spacing"),
    _r("encoding/parallelImaging/multiband/spacing/dZ", "real", "keep", _KEEP_ACQ),
    _r("encoding/parallelImaging/multiband/deltaKz", "real", "keep", _KEEP_ACQ),
    _r("encoding/parallelImaging/multiband/multiband_factor", "integer", "keep", _KEEP_ACQ),
    _r("encoding/parallelImaging/multiband/calibration", "enumerated", "keep", "schema enumeration"),
    _r("encoding/parallelImaging/multiband/calibration_encoding", "integer", "keep", _KEEP_ACQ),
    _r("encoding/echoTrainLength", "integer", "keep", _KEEP_ACQ),
    _r("sequenceParameters", "structure", "keep", "contrast parameters"),
    *(_r(f"sequenceParameters/{key}", "real", "keep", _KEEP_ACQ)
      for key in ("TR", "TE", "TI", "flipAngle_deg", "echo_spacing")),
    _r("sequenceParameters/sequence_type", "enumerated", "keep", "sequence family; only the listed names",
       values=SEQUENCE_TYPES),
    _r("sequenceParameters/diffusionDimension", "enumerated", "keep", "schema enumeration"),
    _r("sequenceParameters/diffusion", "structure", "keep", "diffusion encoding"),
    _r("sequenceParameters/diffusion/gradientDirection", "structure", "keep", "diffusion direction"),
    _r("sequenceParameters/diffusion/gradientDirection/*", "real", "keep", _KEEP_ACQ),
    _r("sequenceParameters/diffusion/bvalue", "real", "keep", _KEEP_ACQ),
    _r("sequenceParameters/diffusionScheme", "text", "drop", "free text"),
    _r("userParameters", "structure", "keep", "only the metai.* provenance parameters; rewritten as strings"),
    _r("userParameters/userParameterLong", "structure", "keep", "a number parameter"),
    _r("userParameters/userParameterDouble", "structure", "keep", "a number parameter"),
    _r("userParameters/userParameterString", "structure", "keep", "a text parameter"),
    _r("userParameters/*/name", "enumerated", "keep",
       "metai.<key> for a key of the provenance table; vendor parameter names are free text and their meaning "
       "unknown, so any other parameter is dropped", values=tuple(f"metai.{r.path}" for r in PROVENANCE_RULES
                                                                  if r.action not in ("drop", "replace"))),
    _r("userParameters/*/value", "provenance", "keep", "checked by the kind of its key in the provenance table"),
    _r("userParameters/userParameterBase64", "structure", "drop", "opaque bytes"),
    _r("waveformInformation", "structure", "drop", "describes the waveforms, which are dropped; names are free text"),
))
_USER_PARAMETER_KINDS = tuple(
    r.path.split("/")[1] for r in HEADER_RULES if r.path.count("/") == 1 and r.path.startswith("userParameters/")
    and r.action == "keep"
)
_USER_PARAMETER_NAMES = frozenset(getattr(HEADER_RULES.get("userParameters/*/name"), "values", ()))


def parse_header(xml: str | bytes) -> Any:
    """Parse an ISMRMRD header into the schema classes.

    Raises:
        DeidentificationError: the header does not parse (the reader accepted it, so this is unexpected).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConverterWarning)
            return ismrmrd.xsd.CreateFromDocument(xml)
    except (ParserError, ConverterWarning, ValueError, TypeError) as exc:
        raise DeidentificationError(
            f"the ISMRMRD header does not parse ({type(exc).__name__}); it cannot be rebuilt"
        ) from None


def rebuild_header(xml: str | bytes, patient: PatientContext, uids: UidMapper) -> tuple[str, str | None]:
    """Return the rebuilt header as XML text and its mapped study UID (None if the source has none).

    Raises:
        DeidentificationError: the header does not parse, a date cannot be shifted, or a field the
            schema requires (experimental conditions, encoding) does not survive its check.
    """
    source = parse_header(xml)
    header = _rebuild(source, "", patient, uids)
    if header is DROP or not header.encoding:
        raise DeidentificationError(
            "the ISMRMRD header keeps no valid experimentalConditions or encoding after de-identification; "
            "the source header is incomplete"
        )
    x = ismrmrd.xsd
    if header.subjectInformation is None:
        header.subjectInformation = x.subjectInformationType()
    header.subjectInformation.patientID = patient.pseudonym
    items = [(p.name.removeprefix("metai."), p.value) for kind in _USER_PARAMETER_KINDS
             for p in getattr(source.userParameters, kind, []) if p.name in _USER_PARAMETER_NAMES]
    header.userParameters = x.userParametersType(userParameterString=[
        x.userParameterStringType(name=f"metai.{key}", value=value)
        for key, value in clean_provenance(items, patient, uids)
    ])
    study = header.studyInformation.studyInstanceUID if header.studyInformation is not None else None
    return str(x.ToXML(header)), study


def _rebuild(obj: Any, path: str, patient: PatientContext, uids: UidMapper) -> Any:
    """A new instance of ``obj``'s class holding only the allowed fields; DROP if a required one is refused."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where = f"{path}/{f.name}" if path else f.name
        rule = HEADER_RULES.get(where)
        value = getattr(obj, f.name)
        if rule is None or rule.action == "drop" or value is None or where.startswith("userParameters/"):
            continue  # user parameters are rebuilt from the provenance table by the caller
        if typing.get_origin(hints[f.name]) is list:
            items = [_field(rule, item, where, patient, uids) for item in value]
            kwargs[f.name] = [item for item in items if item is not DROP]
        else:
            kept = _field(rule, value, where, patient, uids)
            if kept is not DROP:
                kwargs[f.name] = kept
    try:
        return cls(**kwargs)
    except TypeError:  # a required field was refused: the element cannot stand without it
        return DROP


def _field(rule: FieldRule, value: Any, where: str, patient: PatientContext, uids: UidMapper) -> Any:
    if rule.kind == "structure":
        return _rebuild(value, where, patient, uids) if dataclasses.is_dataclass(value) else DROP
    return check(rule, value, patient, uids)
