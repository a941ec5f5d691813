"""The service against a hostile client: schemathesis generates requests from the service's own
OpenAPI schema, both ones the schema allows and ones it forbids (missing fields, wrong types,
odd names in paths), and sends them in process; no answer may be a 5xx. Uploads are real
recordings, cut or damaged ones, or random bytes, so requests get past decoding into the store
and the scorer. ``AUDIOCL_FUZZ_EXAMPLES`` sets the examples per operation and mode."""

import os

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

import audiocl  # noqa: E402
from audiocl.app.service import create_app  # noqa: E402
from audiocl.data.synth import synthesize_corpus  # noqa: E402

TOKEN = "s3cret"
EXAMPLES = int(os.environ.get("AUDIOCL_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, make_tiny_model):
    tmp = tmp_path_factory.mktemp("schema")
    model = audiocl.load_model(make_tiny_model(tmp / "m.pt"))
    app = create_app(model, tmp / "s.db", token=TOKEN, max_upload_mb=1.0)
    voices = synthesize_corpus(tmp / "voices", speakers=2, utterances=2, duration=(1.0, 1.5))
    blobs = [f.read_bytes() for f in sorted(voices.rglob("*.flac"))]
    schemathesis.openapi.format(
        "audio-upload",
        st.one_of(
            st.sampled_from(blobs),
            st.builds(lambda b, n: b[:n], st.sampled_from(blobs), st.integers(0, 4096)),
            st.binary(max_size=2048),
        ),
    )
    for body in app.openapi()["components"]["schemas"].values():  # uploads: audio, not text
        for prop in body["properties"].values():
            field = prop.get("items", prop)
            if field.get("contentMediaType") == "application/octet-stream":
                field["format"] = "audio-upload"
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("auth", [True, False], ids=["token", "no-token"])
def test_no_request_gets_a_server_error(api_schema, mode, auth):
    operations = [op.ok() for op in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/enroll", "POST /api/verify"}
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    sent = []

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            response = case.call(headers=headers)
            sent.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        try:
            send()
        except Unsatisfiable:  # no invalid request exists (GET /api/health takes nothing)
            assert mode == GenerationMode.NEGATIVE, operation.label
    assert len(sent) >= len(operations)
    if mode == GenerationMode.POSITIVE and auth:
        assert 200 in sent  # some requests got through to the model and the store
