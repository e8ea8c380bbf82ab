"""Offline sessions share one botocore data loader and see the same models as their own."""

from __future__ import annotations

import boto3
import botocore.session
import pytest
from botocore.loaders import create_loader

from deltaload.local import sessions


@pytest.fixture(autouse=True)
def shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.session, "create_loader", botocore.session.create_loader)
    monkeypatch.setattr(sessions, "_loaders", {})
    sessions.share_botocore_data()


def test_sessions_share_one_loader_with_one_copy_of_each_search_path() -> None:
    first, second = boto3.Session(region_name="us-east-1"), boto3.Session(region_name="us-east-1")
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    assert len(loader.search_paths) == len(set(loader.search_paths))
    assert any(path.endswith("boto3/data") for path in loader.search_paths)


@pytest.mark.parametrize("service", ["dynamodb", "stepfunctions", "dms", "s3", "lambda"])
def test_a_shared_loader_answers_as_a_session_of_its_own(service: str) -> None:
    shared_client = boto3.Session(region_name="eu-west-1").client(service)
    own = create_loader()
    own.search_paths.append(boto3.Session()._loader.search_paths[-1])  # boto3's data path
    assert shared_client.meta.service_model._service_description == own.load_service_model(
        service, "service-2"
    )
    assert shared_client.meta.endpoint_url.endswith("amazonaws.com")
    assert boto3.Session().get_available_regions(service)
