"""Scanner profiles: at least three distinct virtual twins, selectable by name."""

from __future__ import annotations

import pytest

from raw_data import PROFILES, ImageGrid, ProfileNotFoundError, get_profile, profile_names


def test_at_least_three_distinct_profiles_exist() -> None:
    names = profile_names()
    assert len(names) >= 3
    keys = {
        (p.n_detectors, p.detector_pitch_mm, p.n_views, p.source_to_isocenter_mm, p.incident_flux)
        for p in PROFILES.values()
    }
    assert len(keys) == len(names)


@pytest.mark.parametrize("name", profile_names())
def test_each_profile_gives_a_full_rotation_geometry_that_covers_a_head(name: str) -> None:
    profile = get_profile(name)
    geometry = profile.geometry(ImageGrid((64, 64), 4.0))
    assert geometry.sinogram_shape == (profile.n_views, profile.n_detectors)
    assert geometry.angles[-1] + geometry.angles[1] == pytest.approx(2 * 3.141592653589793)
    assert profile.field_of_view_mm >= 256.0


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileNotFoundError, match="no scanner profile 'nope'; choose one of"):
        get_profile("nope")
    with pytest.raises(LookupError):
        get_profile("nope")
