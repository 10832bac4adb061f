"""A resumed sweep's parent run tells how this attempt ends, not the last one (pass 12's leftover: a sweep that
finished on --resume kept the tag 'the disk filled up during the sweep' of its first attempt)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from ignite_mbo import mlflow_store as store


def test_how_the_last_attempt_ended_moves_to_a_tag_of_its_own_on_resume(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = store.start_sweep_run(uri, "space", "sweep:space", {"name": "space"})
    store.close_run(uri, run_id, "FAILED", "the disk filled up during the sweep")
    assert store.reopen_sweep_run(uri, run_id) == 1
    store.close_run(uri, run_id, "KILLED", "interrupted (SIGTERM)", tag="interrupted")
    assert store.reopen_sweep_run(uri, run_id) == 2
    store.close_run(uri, run_id, "FINISHED")
    run = MlflowClient(uri).get_run(run_id)
    ends = {key: value for key, value in run.data.tags.items() if key.split(".")[-1] in ("error", "interrupted")
            or key.startswith("ignite_mbo.ended_before")}
    assert run.info.status == "FINISHED" and run.data.tags["ignite_mbo.resumed"] == "2" and ends == {
        "ignite_mbo.ended_before_resume_1": "the disk filled up during the sweep",
        "ignite_mbo.ended_before_resume_2": "interrupted (SIGTERM)"}, ends
