"""Decoding a batch's jobs one at a time (ADR 0014), on fakeredis: RQ's default serializer is
pickle and a producer may choose ``JSONSerializer`` (https://python-rq.org/docs/jobs/#job-serialization);
a hash RQ cannot decode is described, not raised."""

from __future__ import annotations

import base64
import zlib

import fakeredis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from adapters.rq.intake import FOREIGN, UNDECODABLE, UndecodableJob, fetch_jobs, raw_hash_text

FUNCTION = "entrypoints.jobs.process_webhook_message"


class TestFetchJobs:
    def test_each_job_of_a_batch_is_decoded_on_its_own(self) -> None:
        connection = fakeredis.FakeRedis()
        ours = Queue("q", connection=connection).enqueue_call(FUNCTION, args=({"a": 1},))
        json_job = Queue("q", connection=connection, serializer=JSONSerializer).enqueue_call(
            FUNCTION, args=({"a": 2},)
        )
        foreign = Queue("q", connection=connection).enqueue_call("os.getcwd")

        fetched = fetch_jobs(connection, [ours.id, json_job.id, "gone", foreign.id], None, FUNCTION)

        assert isinstance(fetched[0], Job)
        assert ({"a": 1},) == tuple(fetched[0].args)
        assert isinstance(fetched[1], UndecodableJob)
        assert UNDECODABLE == fetched[1].reason
        assert "DeserializationError" in fetched[1].error
        assert fetched[2] is None
        assert isinstance(fetched[3], UndecodableJob)
        assert FOREIGN == fetched[3].reason
        assert "'os.getcwd'" in fetched[3].error

    def test_a_hash_without_data_is_undecodable_rather_than_an_error(self) -> None:
        connection = fakeredis.FakeRedis()
        connection.hset("rq:job:half-written", mapping={"origin": "q", "status": "queued"})

        [item] = fetch_jobs(connection, ["half-written"], None, FUNCTION)

        assert isinstance(item, UndecodableJob)
        assert {"origin": "q", "status": "queued"} == item.raw


class TestRawHashText:
    def test_text_values_stay_text_and_binary_ones_are_base64(self) -> None:
        data = zlib.compress(b"\x80\x05binary pickle")

        text = raw_hash_text({b"origin": b"webhook-processing", b"data": data})

        assert "webhook-processing" == text["origin"]
        assert text["data"].startswith("base64:")
        assert data == base64.b64decode(text["data"].removeprefix("base64:"))
