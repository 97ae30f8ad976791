"""The shipped pretrained model and `metarl demo`: loading by name (sha256 checked), the page,
the classify endpoint on real Omniglot test drawings rendered like canvas drawings, and bad
requests, against a real server on 127.0.0.1 (an ephemeral port) in a thread."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import metarl
from metarl import zoo
from metarl.cli import app
from metarl.demo import DEFAULT_MODEL, is_loopback, make_server
from metarl.demo.drawings import CANVAS, PEN
from metarl.demo.server import MAX_BODY, DemoServer
from metarl.errors import UserError

NAME = DEFAULT_MODEL
REAL = Path(os.environ.get("METARL_DATA", "/nonexistent")) / "omniglot"
DOCS = Path(__file__).resolve().parent.parent / "docs"


# --- the shipped model -------------------------------------------------------------------


def test_the_shipped_models_are_listed_the_demos_among_them():
    assert zoo.available() == ["omniglot-5way-1shot", "omniglot-5way-1shot-metasgd"]
    assert NAME == "omniglot-5way-1shot-metasgd"


@pytest.mark.parametrize("name", zoo.available())
def test_shipped_model_loads_by_name_with_its_provenance(name):
    model = metarl.pretrained(name)
    info = model.provenance
    assert model.recipe.task_name == "omniglot" and info["ways"] == 5
    assert info["algorithm"] == model.recipe.train.algorithm.value
    assert info["sha256"] == zoo.sha256(zoo.WEIGHTS_DIR / f"{name}.pt")
    # a run stopped with SIGTERM ships with fewer iterations than its recipe's
    assert 0 < info["meta_iterations"] <= model.recipe.train.meta_iterations
    for mode in ("transductive", "non_transductive"):
        assert 0.0 < info["accuracy"][mode]["mean"] <= 1.0
    assert all(p.dtype == torch.float32 for p in model.model.parameters())
    size = (zoo.WEIGHTS_DIR / f"{name}.pt").stat().st_size
    assert size < 500_000, f"{size} bytes: too large to ship"


def test_the_metasgd_model_ships_its_learned_rates():
    """Meta-SGD adapts with its learned per-parameter rates: they ship beside the weights
    (without them the model would step with the initial rate, another model)."""
    state = torch.load(zoo.WEIGHTS_DIR / f"{NAME}.pt", weights_only=True)
    rates = [k for k in state if k.startswith("alpha.")]
    assert len(rates) == len(state) - len(rates) > 0
    model = metarl.pretrained(NAME).model
    assert all(not torch.all(r == 0.4) for r in model.alpha)  # learned, not the init


def test_the_weights_folder_stays_small():
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.iterdir())
    assert total < 1_000_000, f"{total} bytes of shipped weights"


def test_the_demo_page_states_the_accuracy_of_its_model_in_its_mode(server):
    """The demo predicts non-transductively; its page (/api/info), docs/demo.md and the
    README state the provenance's non-transductive accuracy, the one `metarl eval --init
    pretrained:NAME --no-transductive` gives (checked on the real data below)."""
    accuracy = metarl.pretrained(NAME).provenance["accuracy"]["non_transductive"]
    stated = f"{100 * accuracy['mean']:.1f}%"
    status, info = request(server, "GET", "/api/info")
    assert status == 200 and info["mode"].startswith("non-transductive")
    assert f"{stated} after {accuracy['steps']} steps (non-transductive" in info["about"]
    assert info["default_steps"] == accuracy["steps"]
    page = (DOCS / "demo.md").read_text()
    assert f"**{stated}" in page and f"pretrained:{NAME}" in page
    readme = (DOCS.parent / "README.md").read_text()
    assert f"{stated} on Omniglot's 5-way" in " ".join(readme.split())


@pytest.mark.parametrize("transductive", [False, True])
def test_the_stated_accuracy_is_what_metarl_eval_gives(transductive):
    """`metarl eval --init pretrained:NAME` on the real test split reproduces the provenance's
    figures exactly (same tasks: the recipe's evaluation seed)."""
    if not (REAL / "images_evaluation.zip").is_file():
        pytest.skip("$METARL_DATA holds no omniglot/images_evaluation.zip")
    mode = "transductive" if transductive else "non_transductive"
    accuracy = metarl.pretrained(NAME).provenance["accuracy"][mode]
    args = ["eval", "--init", f"pretrained:{NAME}", "--json", "--threads", "1"]
    args += ["--tasks", str(accuracy["tasks"]), "--steps", str(accuracy["steps"])]
    args += ["--transductive" if transductive else "--no-transductive"]
    result = runner.invoke(app, args, env={"METARL_DATA": str(REAL.parent)})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_tasks"] == accuracy["tasks"] == 1000
    assert payload["mean"][-1] == pytest.approx(accuracy["mean"], abs=1e-4)
    assert payload["ci95"][-1] == pytest.approx(accuracy["ci95"], abs=1e-4)


def test_a_changed_weights_file_is_refused(tmp_path):
    for suffix in (".pt", ".json"):
        shutil.copy(zoo.WEIGHTS_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    data = bytearray((tmp_path / f"{NAME}.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / f"{NAME}.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"sha256 [0-9a-f]{64} does not match"):
        zoo.pretrained(NAME, folder=tmp_path)


def test_an_unknown_name_says_what_ships():
    with pytest.raises(UserError, match=f"'nope' does not exist; shipped: .*{NAME}"):
        zoo.pretrained("nope")


# --- a real server in a thread ----------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    srv = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(
    srv: DemoServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, json.loads(data) if kind.startswith("application/json") else data


def classify(srv: DemoServer, payload: Any) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    return request(srv, "POST", "/api/classify", body, {"Content-Type": "application/json"})


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def canvas(strokes: list[list[tuple[float, float]]]) -> str:
    """A drawing as the page's canvas makes it: black strokes of the page's pen width on
    opaque white, RGBA."""
    from PIL import ImageDraw

    image = Image.new("RGBA", (CANVAS, CANVAS), "white")
    draw = ImageDraw.Draw(image)
    for line in strokes:
        draw.line(line, fill="black", width=PEN, joint="curve")
    return data_url(image)


SHAPES = {  # distinct symbols, in canvas pixels
    "bar": [[(105, 30), (105, 180)]],
    "cross": [[(40, 40), (170, 170)], [(170, 40), (40, 170)]],
    "box": [[(50, 50), (160, 50), (160, 160), (50, 160), (50, 50)]],
}


def test_the_page_is_served_and_uses_only_local_resources(server):
    status, page = request(server, "GET", "/")
    assert status == 200
    html = page.decode()
    assert "<canvas" in html and "/api/classify" in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)
    assert not re.search(r"https?://", html), "the page must not fetch from the internet"
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html), "one self-contained page"
    status, info = request(server, "GET", "/api/info")
    assert status == 200 and info["model"] == f"pretrained:{NAME}"
    assert (info["min_ways"], info["max_ways"]) == (2, 5)
    assert info["default_steps"] == max(metarl.pretrained(NAME).recipe.eval.steps)


def test_classify_returns_probabilities_and_timing(server):
    support = [canvas(SHAPES[k]) for k in ("bar", "cross", "box")]
    status, answer = classify(server, {"support": support, "query": support[1], "steps": 10})
    assert status == 200, answer
    p = answer["probabilities"]
    assert len(p) == 3 and abs(sum(p) - 1.0) < 1e-5 and min(p) >= 0.0
    assert answer["steps"] == 10 and 0.0 < answer["seconds"] < 30.0


def bad_requests() -> list[tuple[str, dict[str, Any] | bytes, int, str]]:
    one = canvas(SHAPES["bar"])
    blank = data_url(Image.new("RGBA", (CANVAS, CANVAS), "white"))
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(jpeg, format="JPEG")
    jpeg_url = "data:image/png;base64," + base64.b64encode(jpeg.getvalue()).decode()
    ok = {"support": [one, one], "query": one, "steps": 5}
    return [
        ("not JSON", b"{support:", 400, "not valid JSON"),
        ("a list", b"[1, 2]", 400, "expected a JSON object"),
        ("N = 1", {**ok, "support": [one]}, 400, "2 to 5 drawings, got 1"),
        ("N = 6", {**ok, "support": [one] * 6}, 400, "2 to 5 drawings, got 6"),
        ("no support", {"query": one, "steps": 5}, 400, "got NoneType"),
        ("steps < 0", {**ok, "steps": -1}, 400, "steps: expected an integer 0 to 200"),
        ("steps 1e6", {**ok, "steps": 10**6}, 400, "steps: expected"),
        ("steps text", {**ok, "steps": "5"}, 400, "steps: expected"),
        ("no query", {**ok, "query": None}, 400, "query drawing: expected a string"),
        ("not base64", {**ok, "query": "data:image/png;base64,@@@"}, 400, "not valid base64"),
        ("a JPEG", {**ok, "query": jpeg_url}, 400, "query drawing: not a readable PNG"),
        ("blank", {**ok, "support": [one, blank]}, 400, "support drawing 2: the drawing is empty"),
    ]


@pytest.mark.parametrize(
    "payload,status,message",
    [pytest.param(*case[1:], id=case[0]) for case in bad_requests()],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(server, payload, status, message):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    got, answer = request(server, "POST", "/api/classify", body)
    assert got == status and message in answer["error"], answer
    assert request(server, "GET", "/api/info")[0] == 200


def test_wrong_paths_methods_and_sizes(server):
    assert request(server, "GET", "/nothing")[0] == 404
    assert request(server, "POST", "/nothing", b"{}")[0] == 404
    assert request(server, "GET", "/api/classify")[0] == 405
    assert request(server, "POST", "/", b"{}")[0] == 405
    assert request(server, "PUT", "/api/classify", b"{}")[0] == 405
    assert request(server, "DELETE", "/")[0] == 405
    # an oversized body is refused from its Content-Length, without being read
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=30) as s:
        s.sendall(
            b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
            + b"{"
        )
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    with socket.create_connection((str(host), port), timeout=30) as s:
        s.sendall(b"POST /api/classify HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).decode().startswith("HTTP/1.1 411")
    assert request(server, "GET", "/api/info")[0] == 200


def test_concurrent_requests_all_get_answers(server):
    support = [canvas(SHAPES[k]) for k in SHAPES]
    payload = {"support": support, "query": support[0], "steps": 5}
    results: list[int] = []

    def post() -> None:
        results.append(classify(server, payload)[0])

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200] * 6


def test_loopback_and_bad_ports():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    with pytest.raises(UserError, match="--port 70000"):
        make_server("127.0.0.1", 70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"--port {port}: cannot listen there"):
            make_server("127.0.0.1", port)


# --- real Omniglot test drawings, drawn as on the canvas ----------------------------------


def test_omniglot_test_drawings_are_classified_right_in_a_clear_majority(server, omniglot_root):
    """On the real test drawings where $METARL_DATA holds Omniglot, else on the synthetic
    set's (tests/conftest.py): the model, trained on real Omniglot, tells its characters'
    strokes apart too."""
    from metarl.data.omniglot import LAYOUT, _open_parts
    from metarl.distributions.omniglot import _split_characters
    from metarl.protocol import Split

    recipe = metarl.pretrained(NAME).recipe.task_options
    with _open_parts(omniglot_root / "omniglot", LAYOUT) as parts:
        names = [(p, c) for p in parts for c in p.characters]
        test = _split_characters(
            len(names),
            len(parts[0].characters),
            recipe["split_mode"],
            None,
            recipe["val_classes"],
            recipe["split_seed"],
        )[Split.TEST]

        def drawing(part: Any, character: str, k: int) -> str:
            """A 105x105 Omniglot PNG at the canvas's 210 pixels, RGBA, as the page sends."""
            png = part.read(character, part.characters[character][k])
            with Image.open(io.BytesIO(png)) as im:
                big = im.convert("L").resize((CANVAS, CANVAS), Image.Resampling.LANCZOS)
            return data_url(big.convert("RGBA"))

        rng = np.random.default_rng(14)
        right = 0
        trials = 20
        for trial in range(trials):
            n = 2 + trial % 4  # 2..5 ways
            chars = [names[i] for i in rng.choice(test, n, replace=False)]
            shots = rng.choice(20, 2, replace=False)
            target = int(rng.integers(n))
            support = [drawing(part, c, int(shots[0])) for part, c in chars]
            query = drawing(*chars[target], int(shots[1]))
            status, answer = classify(server, {"support": support, "query": query, "steps": 50})
            assert status == 200, answer
            p = answer["probabilities"]
            assert len(p) == n and abs(sum(p) - 1.0) < 1e-5
            right += int(np.argmax(p) == target)
    assert right >= 0.7 * trials, f"{right}/{trials} right"


# --- the command line -----------------------------------------------------------------------

runner = CliRunner()


def test_eval_a_shipped_model_by_name_on_its_own_recipe(omniglot_root):
    """On the real data where $METARL_DATA has it, else on the synthetic set."""
    args = ["eval", "--init", f"pretrained:{NAME}", "--tasks", "4", "--steps", "0,1", "--json"]
    result = runner.invoke(app, args, env={"METARL_DATA": str(omniglot_root)})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["run"] == f"pretrained:{NAME}"
    assert payload["transductive"] is True  # the Meta-SGD recipe's mode, as MAML evaluates
    assert payload["steps"] == [0, 1] and payload["n_tasks"] == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval"], "give a RUN_DIR"),
        (
            ["eval", "--init", "pretrained:nope"],
            "'nope' does not exist; shipped: omniglot-5way-1shot, omniglot-5way-1shot-metasgd",
        ),
        (["eval", "--init", "pretrained"], "expected one of meta, random, joint, pretrained:NAME"),
        (["demo", "--port", "70000", "--no-browser"], "--port 70000: expected 0"),
        (["demo", "--model", "nope", "--no-browser"], "'nope' does not exist"),
        (
            ["demo", "--run", "RUN", "--no-browser"],
            "its task is 'sine'; the demo needs an omniglot",
        ),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, args, message):
    if "RUN" in args:
        run = tmp_path / "sine"
        result = runner.invoke(app, ["train", "sine", "--meta-iterations", "2", "--out", str(run)])
        assert result.exit_code == 0, result.output
        args = [str(run) if a == "RUN" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
