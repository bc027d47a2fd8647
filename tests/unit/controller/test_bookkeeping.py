"""kopf's change detection from the status digest: unchanged objects are NOOPs, any change to
spec, labels or user annotations is a change, kopf's own annotations and the status are not."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from kubemint.controller.bookkeeping import StatusDigestDiffBase, UnmarkedProgressStorage
from kubemint.controller.setup import KOPF_PREFIX

PROGRESS = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
LEGACY = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")


def storage() -> StatusDigestDiffBase:
    return StatusDigestDiffBase(PROGRESS, legacy=LEGACY)


def client(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "apiVersion": "kubemint.io/v1alpha1",
        "kind": "OAuth2Client",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "1",
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
        },
        "spec": {"audiences": ["https://api"], "scopes": ["read"]},
        "status": {"observedGeneration": 1},
    }
    raw.update(changes)
    return raw


def essence(store: StatusDigestDiffBase, raw: dict[str, Any]) -> Any:
    """What kopf compares with the fetched essence (processing._detect_causes)."""
    return PROGRESS.clear(essence=store.build(body=kopf.Body(raw)))


def handled(store: StatusDigestDiffBase, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` after kopf stored its essence: the status patch applied."""
    patch = kopf.Patch()
    store.store(body=kopf.Body(raw), patch=patch, essence=essence(store, raw))
    assert set(patch) == {"status"}, "the digest travels in the status PATCH only"
    done = copy.deepcopy(raw)
    done["status"].update(patch["status"])
    return done


def test_unchanged_object_fetches_its_own_essence() -> None:
    store = storage()
    raw = handled(store, client())
    assert store.fetch(body=kopf.Body(raw)) == essence(store, raw)


def test_status_resource_version_and_kopf_annotations_are_no_change() -> None:
    store = storage()
    raw = handled(store, client())
    raw["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    raw["metadata"]["resourceVersion"] = "7"
    raw["metadata"]["annotations"][f"{KOPF_PREFIX}/oauth2_client"] = '{"retries": 1}'
    assert store.fetch(body=kopf.Body(raw)) == essence(store, raw)


def test_spec_label_and_annotation_changes_are_changes() -> None:
    store = storage()
    base = handled(store, client())
    edits = [
        lambda r: r["spec"].update(scopes=["write"]),
        lambda r: r["metadata"]["labels"].update(team="b"),
        lambda r: r["metadata"]["annotations"].update({"kubemint.io/rotate": "now"}),
    ]
    for edit in edits:
        raw = copy.deepcopy(base)
        edit(raw)
        fetched = store.fetch(body=kopf.Body(raw))
        assert fetched is not None
        assert fetched != essence(store, raw)


def test_without_digest_reads_the_legacy_annotation() -> None:
    store = storage()
    raw = client()
    assert store.fetch(body=kopf.Body(raw)) is None  # never handled: kopf's CREATE
    patch = kopf.Patch()
    LEGACY.store(body=kopf.Body(raw), patch=patch, essence=essence(store, raw))
    raw["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    assert store.fetch(body=kopf.Body(raw)) == LEGACY.fetch(body=kopf.Body(raw))
    # The next handled change writes the digest, which then wins over the stale annotation.
    raw = handled(store, raw)
    raw["spec"]["scopes"] = ["write"]
    assert store.fetch(body=kopf.Body(raw)) != essence(store, raw)


def test_progress_of_a_handler_that_succeeded_at_once_writes_nothing() -> None:
    """kopf stores the outcome and purges it in the same cycle: nothing may be left to PATCH
    (kopf's storage left its kopf-managed marker, one body PATCH per new object)."""
    body = kopf.Body(client())
    for progress, left in [(PROGRESS, True), (UnmarkedProgressStorage(prefix=KOPF_PREFIX), False)]:
        patch = kopf.Patch()
        record = {"started": "2026-01-01T00:00:00", "success": True, "retries": 1}
        progress.store(key="oauth2_client", record=record, body=body, patch=patch)
        progress.purge(key="oauth2_client", body=body, patch=patch)
        assert bool(patch) is left
