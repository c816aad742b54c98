"""The heuristic provider's column-name knowledge is data (chalicelib/providers/heuristic/data/*.json), read once."""
from __future__ import annotations

import json
import shutil

import pytest

from chalicelib.providers.heuristic import vocabulary
from chalicelib.providers.heuristic.vocabulary import get_vocabulary, guess_column_comment, guess_table_comment


@pytest.fixture
def fresh_vocabulary():
    get_vocabulary.cache_clear()
    yield
    get_vocabulary.cache_clear()


def test_labels_come_from_the_data_files():
    assert guess_column_comment("service_area_name", zh=True) == "服务区名称"
    assert guess_column_comment("service_area_name", zh=False) == "Service area name"
    assert guess_column_comment("create_ts", zh=True) == "创建时间"
    assert guess_table_comment("bss_service_area", zh=True) == "服务区"
    assert guess_column_comment("zzz_unknown", zh=True) is None  # nothing guessed for an unknown word


def test_a_word_added_to_the_data_is_used(tmp_path, monkeypatch, fresh_vocabulary):
    data = tmp_path / "data"
    shutil.copytree(vocabulary.DATA_DIR, data)
    labels = json.loads((data / "labels.json").read_text(encoding="utf-8"))
    labels["words_zh"]["charger"] = "充电桩"
    labels["exact_columns"]["plate"] = ["车牌号", "Licence plate"]
    (data / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(vocabulary, "DATA_DIR", data)
    assert guess_column_comment("charger_count", zh=True) == "充电桩数量"
    assert guess_column_comment("plate", zh=False) == "Licence plate"


def test_read_once_per_process(fresh_vocabulary):
    assert get_vocabulary() is get_vocabulary()


def test_data_files_are_well_formed():
    labels = json.loads((vocabulary.DATA_DIR / "labels.json").read_text(encoding="utf-8"))
    for table in ("exact_columns", "suffixes"):
        for name, pair in labels[table].items():
            assert name == name.lower() and len(pair) == 2 and all(isinstance(t, str) and t for t in pair), name
    assert all(isinstance(v, str) and v for v in labels["words_zh"].values())
    roles = json.loads((vocabulary.DATA_DIR / "column_roles.json").read_text(encoding="utf-8"))
    for key in ("soft_delete", "audit_time", "audit_user", "enum_words", "not_measure_words", "table_prefixes"):
        assert roles[key] and all(isinstance(v, str) and v == v.lower() for v in roles[key]), key
    loaded = get_vocabulary()
    assert loaded.soft_delete <= loaded.audit_time  # a soft-delete marker is an audit timestamp too
