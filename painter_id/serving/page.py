"""A web page to try a model: pick a painting, see its top-5 painters (served by ``painter-page``).

The page shows the model version and the
training run it came from, probability bars for the five most likely painters, a readable
message for a file that is not an image, and refuses uploads over ``--max-mb`` (in the browser
before sending, and on the server from the request's length, before reading it). The model is
the same MLflow Model ``painter-predict`` and ``mlflow models serve`` use.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Optional

import mlflow
from flask import Flask, jsonify, request
from mlflow.exceptions import MlflowException
from werkzeug.exceptions import RequestEntityTooLarge

from painter_id.tracking import mlflow_model

log = logging.getLogger(__name__)

TOP_K = 5

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Which painter?</title>
<style>
body{font-family:system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em;color:#222}
#model{color:#555;font-size:.9em} .row{display:flex;align-items:center;margin:.35em 0}
.name{width:15em} .track{flex:1;background:#eee;height:1.1em;margin-right:.6em}
.bar{height:100%%;background:#3a7} .pct{width:4.5em;text-align:right} #error{color:#b00}
#preview{max-width:16em;max-height:16em;display:block;margin:1em 0}
</style></head><body>
<h1>Which painter?</h1>
<p id="model">Model: %(model)s</p>
<form id="form" action="/predict" method="post" enctype="multipart/form-data">
  <input id="file" type="file" name="image" accept="image/*" required>
  <button id="submit" type="submit">Identify</button>
</form>
<img id="preview" alt="" hidden><p id="status"></p><p id="error"></p><div id="result"></div>
<script>
const MAX = %(max_mb)d * 1024 * 1024;
const $ = (id) => document.getElementById(id);
$('file').addEventListener('change', () => {
  const f = $('file').files[0];
  if (f && f.size <= MAX) { $('preview').src = URL.createObjectURL(f); $('preview').hidden = false; }
});
$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = $('file').files[0];
  $('error').textContent = ''; $('result').innerHTML = ''; delete $('result').dataset.done;
  if (!f) { $('error').textContent = 'Choose an image first.'; return; }
  if (f.size > MAX) {
    $('error').textContent = `${f.name} is ${(f.size / 1048576).toFixed(1)} MB; the limit is %(max_mb)d MB.`;
    return;
  }
  $('status').textContent = 'Looking at the brushwork...';
  const body = new FormData(); body.append('image', f);
  try {
    const reply = await fetch('/predict', {method: 'POST', body, headers: {'Accept': 'application/json'}});
    const answer = await reply.json();
    $('status').textContent = '';
    if (!reply.ok) { $('error').textContent = answer.error; return; }
    for (const p of answer.top) {
      const row = document.createElement('div'); row.className = 'row result-row';
      row.innerHTML = '<span class="name"></span><span class="track"><div class="bar"></div></span><span class="pct"></span>';
      row.querySelector('.name').textContent = p.artist.replaceAll('_', ' ');
      row.querySelector('.bar').style.width = (100 * p.probability).toFixed(1) + '%%';
      row.querySelector('.pct').textContent = (100 * p.probability).toFixed(1) + ' %%';
      $('result').appendChild(row);
    }
    $('result').dataset.done = '1';
  } catch (e) { $('status').textContent = ''; $('error').textContent = 'The request failed: ' + e; }
});
</script></body></html>"""


@dataclass(frozen=True)
class Served:
    """The loaded model and the line that says where it came from."""

    model: mlflow.pyfunc.PyFuncModel
    origin: str


def describe(uri: str, model: mlflow.pyfunc.PyFuncModel, tracking_uri: str) -> str:
    """``painter-id version 3 (alias champion), run tatty-jean (9a0dc4ec...)`` for a registry URI, else the run."""
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    where = uri
    run_id = model.metadata.run_id
    if uri.startswith("models:/") and not uri.startswith("models:/m-"):
        name, _, ref = uri[len("models:/"):].partition("@")
        try:
            if ref:
                version = client.get_model_version_by_alias(name, ref)
                where = f"{name} version {version.version} (alias {ref})"
            else:
                name, _, number = name.partition("/")
                version = client.get_model_version(name, number)
                where = f"{name} version {version.version}"
            run_id = version.run_id or run_id
        except MlflowException:
            pass
    if not run_id:
        return where
    try:
        run_name = client.get_run(run_id).info.run_name
    except MlflowException:
        run_name = None
    return f"{where}, run {run_name} ({run_id})" if run_name else f"{where}, run {run_id}"


def create_app(served: Served, max_mb: int = 20) -> Flask:
    """The Flask app of the page (``/`` and ``POST /predict``), answering JSON to ``Accept: application/json``."""
    app = Flask("painter_id.serving.page")
    app.config["MAX_CONTENT_LENGTH"] = max_mb * 1024 * 1024  # Werkzeug refuses longer requests unread

    def reply(payload: dict, code: int = 200):
        if "application/json" in request.headers.get("Accept", ""):
            return jsonify(payload), code
        if "error" in payload:
            return f"<!doctype html><p id='error'>{html.escape(payload['error'])}</p><a href='/'>back</a>", code
        rows = "".join(f"<div class='result-row'>{html.escape(p['artist'])}: {100 * p['probability']:.1f} %</div>"
                       for p in payload["top"])
        return f"<!doctype html><div id='result'>{rows}</div><a href='/'>back</a>", code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        size = (request.content_length or 0) / 1048576
        return reply({"error": f"Upload of {size:.1f} MB refused: the limit is {max_mb} MB."}, 413)

    @app.get("/")
    def index():
        return PAGE % {"model": html.escape(served.origin), "max_mb": max_mb}

    @app.post("/predict")
    def predict():
        upload = request.files.get("image")
        if upload is None or not upload.filename:
            return reply({"error": "No file was sent: choose an image first."}, 400)
        try:
            out = served.model.predict(mlflow_model.frame([upload.read()]), params={"top_k": TOP_K})
        except MlflowException as exc:  # the model's own one-line reason: "row 0: not an image: ..."
            reason = exc.message.split(": ", 1)[-1]
            return reply({"error": f"{upload.filename} cannot be read as an image ({reason})."}, 400)
        top = [{"artist": row.artist, "probability": float(row.probability)} for row in out.itertuples()]
        return reply({"file": upload.filename, "model": served.origin, "top": top})

    return app


def load(uri: str, tracking_uri: Optional[str] = None) -> Served:
    """Load the MLflow Model ``uri`` from the project's store (or ``tracking_uri``)."""
    tracking_uri = tracking_uri or mlflow_model.project_store()
    model = mlflow_model.load(uri, tracking_uri)
    mlflow_model.painter_model(model, uri)  # a clear error now rather than on the first upload
    return Served(model, describe(uri, model, tracking_uri))
