"""A kit for testing plugins: run pipelines from dicts, feed and record records, check contracts.

Import it in a plugin's own tests as ``etl_core.testing``::

    from etl_core.testing import ListSource, RecordingSink, plugin_of, run_pipeline_sync

    def test_my_transform(tmp_path):
        sink = RecordingSink()
        result = run_pipeline_sync(
            {
                "pipeline": "t",
                "source": {"type": "list", "items": [{"email": " A@B.COM "}]},
                "transforms": [{"type": "my_transform"}],
            },
            plugins=[plugin_of(ListSource), my_plugin_module],
            sink=sink,
            tmp_dir=tmp_path,
        )
        assert result.exit_code == 0
        assert sink.data() == [{"email": "a@b.com"}]

What it offers:

* :func:`run_pipeline_from_dict` (async) and :func:`run_pipeline_sync` run a pipeline
  described by a dict, validated exactly like a config file.
* :class:`ListSource` (``type: list``) yields records from an ``items`` option.
* :class:`RecordingSink` (``type: recording``) keeps every record it receives and can be
  told to fail chosen records with chosen errors.
* :func:`plugin_of` turns plugin classes into a plugin object to register.
* :func:`assert_classifies`, :func:`check_sink_contract` and :func:`check_plugin_class`
  check that a plugin keeps the contract the runner relies on (``send_batch`` included,
  for a sink that sends in batches).
"""

from ._contracts import (
    CLASSIFIED_ERRORS,
    assert_classifies,
    check_plugin_class,
    check_sink_contract,
)
from ._doubles import ListSource, RecordingSink
from ._plugins import plugin_of
from ._running import run_pipeline_from_dict, run_pipeline_sync

__all__ = [
    "CLASSIFIED_ERRORS",
    "ListSource",
    "RecordingSink",
    "assert_classifies",
    "check_plugin_class",
    "check_sink_contract",
    "plugin_of",
    "run_pipeline_from_dict",
    "run_pipeline_sync",
]
