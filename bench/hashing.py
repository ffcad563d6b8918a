"""Meta user_data normalization + SHA-256 per event: ours (meta_normalize.hash_person) vs Meta's SDK.

Same inputs for both; the outputs are compared field by field before any timing is trusted (a faster
wrong answer is no answer). external_id is left out of the inputs: the SDK sends it raw and we hash it
by design, so the two cannot agree on it. The SDK (facebook-business) and its pycountry are test-only
dependencies; this benchmark needs the dev venv.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import common, fixtures

SDK_FIELDS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country")


def sdk_user_data(person: Any) -> dict[str, list[str]]:
    from facebook_business.adobjects.serverside.gender import Gender
    from facebook_business.adobjects.serverside.user_data import UserData

    user = UserData(
        email=person.email,
        phone=person.phone,
        first_name=person.first_name,
        last_name=person.last_name,
        date_of_birth=person.date_of_birth,
        gender=Gender(person.gender.strip().lower()) if person.gender else None,
        city=person.city,
        state=person.state,
        zip_code=person.zip,
        country_code=person.country,
    )
    normalized = user.normalize()
    return {key: normalized[key] for key in SDK_FIELDS if key in normalized}


def ours_user_data(person: Any) -> dict[str, list[str]]:
    from conversion_relay.meta_normalize import hash_person

    return hash_person(person).fields


def check_outputs_match(persons: list[Any]) -> int:
    """Raises AssertionError naming the field (never the value) where the two disagree."""
    for index, person in enumerate(persons):
        expected, got = sdk_user_data(person), ours_user_data(person)
        if expected != got:
            fields = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
            raise AssertionError(f"person #{index}: ours and the SDK differ on {fields}")
    return len(persons)


def run(count: int = 2000, repeats: int = 7) -> dict[str, Any]:
    persons = fixtures.people(count)
    checked = check_outputs_match(persons)  # also warms both (pycountry loads its database lazily)
    ours: list[float] = []
    sdk: list[float] = []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        ours.append(common.cpu_us_per_item(ours_user_data, persons))
        sdk.append(common.cpu_us_per_item(sdk_user_data, persons))
    ours_us, sdk_us = common.median(ours), common.median(sdk)
    return {
        "events": count,
        "repeats": repeats,
        "outputs_compared": checked,
        "fields": list(SDK_FIELDS),
        "ours_us_per_event": ours_us,
        "sdk_us_per_event": sdk_us,
        "ratio_ours_to_sdk": ours_us / sdk_us,
    }


def main() -> None:
    result = run()
    target = common.out_path(sys.argv)
    if target:
        common.write_json(target, result)
    print(
        f"hashing: ours {result['ours_us_per_event']:.1f} us/event, SDK {result['sdk_us_per_event']:.1f} "
        f"us/event, ratio {result['ratio_ours_to_sdk']:.2f} ({result['outputs_compared']} outputs identical)"
    )


if __name__ == "__main__":
    main()
