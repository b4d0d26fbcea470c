"""`cliplab train --dry-run`: the model, its adapters and every parameter group, nothing written."""

from cliplab.cli import main


def test_a_dry_run_lists_the_groups_and_writes_nothing(tmp_path, capsys):
    code = main(["train", "--logs", str(tmp_path), "--name", "x", "--dry-run", "--layer-decay", "0.5",
                 "--lora-rank", "2", "--lora-text-only", "--lr-image", "1e-3", "--wd-text", "0.2"])
    assert code == 0 and not any(tmp_path.iterdir())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "dry run: nothing is trained or written"
    assert lines[1].startswith("model: clip,") and lines[2].startswith("LoRA (peft): rank 2, alpha 2 (scale 1)")
    assert "0 in the vision_tower" not in lines[2] and "in the text_tower" in lines[2]
    groups = [line for line in lines if line.startswith("  group ")]
    assert len(groups) > 2 and lines[3].startswith(f"optimiser: AdamW, lr 0.002 times x") and \
        f"in {len(groups)} parameter groups" in lines[3]
    image = [line for line in groups if "image" in line]
    # lr_image / lr = 0.5, times the image tower's layer decay 0.5 ** (5 - group): stem, 3 stages, norm
    assert sorted({line.split("lr x")[1].split()[0] for line in image}) == ["0.03125", "0.0625", "0.125", "0.25", "0.5"]
    assert any("weight decay 0.2" in line and "text" in line for line in groups)
