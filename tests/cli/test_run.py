import shlex

from typer.testing import CliRunner

from topos_cli.cli.main import app

runner = CliRunner()

RECIPE = """
topos: 1
name: t
vars: {run: RUN, tpl: TPL}
steps:
  - augment: {out: "${run}/aug", template: "${tpl}", copies: 2, identity_sigma: 1.0, seed: 3}
  - augment: {input: "${run}/aug", out: "${run}/aug2", template: "${tpl}", copies: 1, regions: false, identity_sigma: 0.5}
"""


def test_dry_run_lines_equal_the_recipe_run(tmp_path, tiny_template_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("RUN", str(tmp_path / "a")).replace("TPL", str(tiny_template_dir)))
    dry = runner.invoke(app, ["run", str(recipe), "--dry-run", "--set", f"run={tmp_path / 'b'}"])
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("topos augment --out")
    for line in lines:  # run the printed shell lines by hand ...
        assert runner.invoke(app, shlex.split(line)[1:]).exit_code == 0
    res = runner.invoke(app, ["run", str(recipe)])  # ... and the recipe itself
    assert res.exit_code == 0, res.output
    for sub in ("aug", "aug2"):
        assert (tmp_path / "a" / sub / "manifest.jsonl").read_text() == \
            (tmp_path / "b" / sub / "manifest.jsonl").read_text().replace(str(tmp_path / "b"), str(tmp_path / "a"))
    assert (tmp_path / "a" / "recipe.resolved.yaml").is_file()


def test_recipe_errors(tmp_path):
    cases = {
        "topos: 1\nsteps: [{augment: {out: x}}]\nbogus: 1\n": "unknown recipe key",
        "topos: 1\nsteps: [{augment: {out: '${nope}'}}]\n": "unknown variable",
        "steps: [{augment: {out: x}}]\n": "topos: 1",
        "topos: 1\nsteps: [{augment: {out: x}, render: {}}]\n": "one-key mapping",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        res = runner.invoke(app, ["run", str(path), "--dry-run"])
        assert res.exit_code == 2 and message in res.output, (text, res.output)


def test_failing_step_stops_with_its_exit_code(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"topos: 1\nsteps:\n  - augment: {{input: {tmp_path / 'missing'}, out: {tmp_path / 'o'}}}\n")
    res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2 and "step 1" in res.output


def test_recipe_steps_call_the_api_with_typed_options(tmp_path, monkeypatch):
    import functools

    from topos_cli.commands import align, recipe

    fn, kwargs = recipe.bind_step("augment", {"out": "o", "copies": "3", "regions": "false", "identity_sigma": "1"},
                                  "step 1")
    assert kwargs == {"input": None, "out": "o", "copies": 3, "regions": False, "identity_sigma": 1.0}
    _, kwargs = recipe.bind_step("align", {"input": ["p", "g"], "out": "o", "yaws": "0,90", "json": True}, "s")
    assert kwargs == {"pred": "p", "gt": "g", "out": "o", "yaws": [0.0, 90.0]}
    _, kwargs = recipe.bind_step("train.vae", {"out": "r", "loss_weights": '{"vertex": 10}', "steps": "2"}, "s")
    assert kwargs == {"out": "r", "loss_weights": {"vertex": 10}, "steps": 2}
    _, kwargs = recipe.bind_step("template.export", {"out": "x.obj", "expression": ["jawOpen=0.5"]}, "s")
    assert kwargs["expression"] == {"jawOpen": 0.5}
    for step, message in ((("augment", {"out": "o", "bogus": 1}), "unknown option 'bogus'"),
                          (("paint", {}), "unknown command"), (("augment", {"out": "o", "copies": "x"}), "copies")):
        try:
            recipe.bind_step(*step, "step 1")
            raise AssertionError(step)
        except recipe.UsageError as exc:
            assert message in str(exc)
    calls = []

    @functools.wraps(align.metrics)  # the real signature: the recipe checks and types options against it
    def fake_metrics(pred, gt, **kw):
        calls.append((pred, gt, kw))
        return {}

    monkeypatch.setattr(align, "metrics", fake_metrics)
    path = tmp_path / "r.yaml"
    path.write_text("topos: 1\nsteps:\n  - metrics: {input: [a, b], samples: '100', csv: true}\n")
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    assert calls == [("a", "b", {"samples": 100})]
