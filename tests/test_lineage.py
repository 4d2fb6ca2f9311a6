"""langadapt.lineage: continued adapters record what they hold, and chains applying it twice are refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from langadapt.errors import InputError
from langadapt.lineage import LINEAGE_FILE, check_chain, read_lineage, write_lineage


def adapter(path, peft_type: str, peft_path=None, mode=None) -> str:
    os.makedirs(path)
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": peft_type}, f)
    write_lineage(str(path), str(peft_path) if peft_path else None, mode or {"LORA": "lora"}.get(peft_type,
                                                                                                  "new_rows"))
    return str(path)


@pytest.fixture()
def family(tmp_path):
    pt = adapter(tmp_path / "pt", "LORA")
    sft = adapter(tmp_path / "sft", "LORA", pt, "lora")  # same type: continues pt
    rows = adapter(tmp_path / "rows", "TRAINABLE_TOKENS", pt, "new_rows")  # another type: pt merged first
    sft2 = adapter(tmp_path / "sft2", "LORA", sft, "lora")  # continues sft, which continued pt
    return {"pt": pt, "sft": sft, "rows": rows, "sft2": sft2}


def test_records(family):
    pt = read_lineage(family["pt"])
    assert pt.adapter_id and pt.continued_from == [] and pt.parents == []
    assert [r["id"] for r in read_lineage(family["sft2"]).continued_from] == [
        read_lineage(family["sft"]).adapter_id, pt.adapter_id]
    rows = read_lineage(family["rows"])
    assert rows.continued_from == [] and rows.parents == [{"id": pt.adapter_id, "path": family["pt"]}]


@pytest.mark.parametrize("chain,fragment", [
    (("pt", "sft"), "continues the adapter"), (("sft", "pt"), "continues the adapter"),
    (("pt", "sft2"), "continues the adapter"), (("rows", "pt"), "training order"),
])
def test_refused_chains_name_both_folders(family, chain, fragment):
    with pytest.raises(InputError, match=fragment) as e:
        check_chain([family[c] for c in chain])
    assert all(family[c] in e.value.message for c in chain) and e.value.arg == "lora_model"


@pytest.mark.parametrize("chain", [("sft",), ("sft2",), ("pt", "rows"), ("rows",), ("pt",)])
def test_accepted_chains(family, chain):
    check_chain([family[c] for c in chain])


def test_a_copied_or_moved_adapter_is_still_recognised(family, tmp_path):
    moved = str(tmp_path / "elsewhere" / "pt")
    shutil.copytree(family["pt"], moved)
    with pytest.raises(InputError, match="continues the adapter"):
        check_chain([moved, family["sft"]])


def test_rerun_keeps_the_id(family):
    before = read_lineage(family["sft"]).adapter_id
    write_lineage(family["sft"], family["pt"], "lora")
    assert read_lineage(family["sft"]).adapter_id == before


def test_older_folder_without_lineage_reads_run_args(family, tmp_path):
    old = str(tmp_path / "old_sft")
    shutil.copytree(family["sft"], old)
    os.remove(os.path.join(old, LINEAGE_FILE))
    with open(os.path.join(old, "run_args.json"), "w") as f:
        json.dump({"adaptation": {"peft_path": family["pt"], "training_mode": "lora"}}, f)
    assert read_lineage(old).adapter_id is None
    with pytest.raises(InputError, match="continues the adapter"):
        check_chain([family["pt"], old])
    check_chain([old])
