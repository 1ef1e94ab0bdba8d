"""Forms and uploads in the console: enter a row on a phone, or upload a sheet, see what is refused, land the rest.

Pages: ``/forms`` (the forms this person may fill in), ``/forms/NAME`` (the form; its script checks the same rules
as the server while the person types), ``POST /forms/NAME`` (one entry), ``POST /forms/NAME/upload`` (a CSV or
xlsx: a preview of what would land and every refused row with its reasons), ``POST /forms/NAME/upload/ID`` (land
the previewed rows). The API: ``POST /api/v1/forms/NAME/entries`` with ``{"submission": ID, "rows": […]}``.

Every page carries a submission id made when it is shown; sending it again (a double tap, a retry after a lost
answer, a server killed before it answered) lands nothing new (kiban.forms.land). Every entry is audited.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Path, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from kiban.errors import KibanError
from kiban.forms.land import check_submission, entry_table, land, load_pending, new_submission, write_entry
from kiban.forms.previews import PREVIEW_HOURS, expired, stage, staged, sweep
from kiban.forms.spec import Form, get_form, load_forms
from kiban.forms.validate import Checked, check_row, check_rows, read_upload, rules
from kiban.web.accounts import Accounts, User
from kiban.web.auth import client_ip, current_user, need
from kiban.web.templating import render
from kiban.web.views import Site

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["forms"])
Viewer = Annotated[User, Depends(current_user)]
Enterer = Annotated[User, Depends(need("viewer"))]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
Submission = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PREVIEW_ROWS = 20
REFUSED_SHOWN = 500


def _form(request: Request, name: str, user: User) -> tuple[Site, Form]:
    site: Site = request.app.state.site
    form = get_form(site.project, name)
    if not form.may_enter(user.name, user.role):
        raise HTTPException(403, f"{user.name} may not enter {form.title}: ask for one of {', '.join(form.config.who)}")
    return site, form


def _audit(request: Request, user: User, form: Form, outcome: str, detail: str) -> None:
    accounts: Accounts = request.app.state.accounts
    accounts.audit(user.name, "form.enter", form.name, client_ip(request), outcome, detail)


def _landed_words(landed: Any) -> str:
    words = f"{landed.rows:,} row{'s' if landed.rows != 1 else ''}"
    if landed.duplicate:
        return f"already received ({words}); nothing was added twice"
    if not landed.loaded:
        return f"received {words}; another load was running, the next load lands them"
    return f"landed {words} in {landed.load_id}" + (f" ({landed.quarantined} quarantined)" if landed.quarantined
                                                     else "")


# -- pages ---------------------------------------------------------------------------------------------------------

@router.get("/forms")
def forms(request: Request, user: Viewer) -> Response:
    site: Site = request.app.state.site
    found = [f for f in load_forms(site.project).values() if f.may_enter(user.name, user.role)]
    return render(request, "forms.html", forms=found)


@router.get("/forms/{name}")
def form_page(request: Request, name: Name, user: Viewer, landed: str | None = None) -> Response:
    _, form = _form(request, name, user)
    return render(request, "form.html", form=form, values={}, errors={}, submission=new_submission(),
                  rules=json.dumps(rules(form)), landed=landed)


@router.post("/forms/{name}")
async def enter(request: Request, name: Name, user: Enterer) -> Response:
    _, form = _form(request, name, user)
    data = await request.form()
    values = {s.name: str(data.get(s.name) or "") for s in form.config.fields}
    submission = str(data.get("submission") or "")
    typed, errors = check_row(form, values)
    if errors or not submission:
        return render(request, "form.html", 422, form=form, values=values, errors=errors,
                      submission=submission or new_submission(), rules=json.dumps(rules(form)), landed=None)
    landed = await run_in_threadpool(_land, request, user, form, [typed], submission, None)
    return RedirectResponse(f"/forms/{form.name}?landed={_landed_words(landed)}", status_code=303)


def _land(request: Request, user: User, form: Form, rows: list[dict[str, Any]], submission: str,
          numbers: list[int] | None) -> Any:
    site: Site = request.app.state.site
    try:
        landed = land(site.project, site.store, form, rows, user.name, check_submission(submission), numbers=numbers)
    except KibanError as exc:
        _audit(request, user, form, "failed", exc.message)
        raise
    _audit(request, user, form, "ok", f"{submission}: {_landed_words(landed)}")
    return landed




@router.post("/forms/{name}/upload")
async def upload(request: Request, name: Name, user: Enterer, file: Annotated[UploadFile, File()]) -> Response:
    site, form = _form(request, name, user)
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    submission = new_submission()

    def preview() -> Checked:
        checked = check_rows(form, read_upload(form, file.filename or "upload", data))
        sweep(site.project)  # previews others walked away from
        if checked.valid:  # kept until the person lands it (or it expires): the preview is exactly what lands
            from datetime import UTC, datetime

            stage(site.project, form.name, submission,
                  entry_table(form, checked.valid, user.name, submission, datetime.now(UTC), checked.rows))
        return checked

    checked = await run_in_threadpool(preview)
    return render(request, "form_preview.html", form=form, submission=submission, filename=file.filename,
                  valid=len(checked.valid), sample=checked.valid[:PREVIEW_ROWS],
                  refused=checked.refused[:REFUSED_SHOWN], refused_total=len(checked.refused))


@router.post("/forms/{name}/upload/{submission}")
async def land_upload(request: Request, name: Name, submission: Submission, user: Enterer) -> Response:
    site, form = _form(request, name, user)

    def go() -> str:
        import pyarrow.parquet as pq

        path = staged(site.project, form.name, submission)
        target = form.folder / f"{submission}.parquet"
        if path.exists() and not target.exists() and expired(path):
            path.unlink(missing_ok=True)
        if not path.exists() and not target.exists():
            raise HTTPException(404, f"this upload's preview is gone (previews are kept {PREVIEW_HOURS:g} hours): "
                                     "upload the file again")
        if path.exists():
            table = pq.read_table(path)
            if set(table.column("_entered_by").to_pylist()) != {user.name}:
                raise HTTPException(403, "this preview was made by someone else")
            write_entry(form, table, submission)
            path.unlink(missing_ok=True)
        result = load_pending(site.project, site.store, form)
        rows = pq.read_metadata(target).num_rows
        words = f"landed {rows:,} rows" + (f" in {result.record.load_id}" if result is not None else
                                           " (the next load takes them: another load was running)")
        _audit(request, user, form, "ok", f"{submission}: upload, {words}")
        return words

    words = await run_in_threadpool(go)
    return RedirectResponse(f"/forms/{form.name}?landed={words}", status_code=303)


# -- API -----------------------------------------------------------------------------------------------------------

class EntriesIn(BaseModel):
    submission: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$",
                            description="An id the client makes once per submission: sending it again lands nothing")
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=200_000)


class RefusedOut(BaseModel):
    row: int
    reasons: dict[str, str]


class EntriesOut(BaseModel):
    submission: str
    rows: int
    duplicate: bool
    loaded: bool
    load_id: str | None
    refused: list[RefusedOut] = []


@api.post("/forms/{name}/entries", response_model=EntriesOut)
async def api_entries(request: Request, name: Name, body: EntriesIn, user: Enterer) -> Any:
    """Land rows of a form (all or nothing: any refused row → 422 with the reasons of each)."""
    _, form = _form(request, name, user)
    checked = check_rows(form, body.rows)
    if checked.refused:
        from starlette.responses import JSONResponse

        return JSONResponse({"detail": "some rows were refused; nothing landed",
                             "refused": [{"row": r.row, "reasons": r.reasons} for r in checked.refused[:1000]]},
                            status_code=422)
    landed = await run_in_threadpool(_land, request, user, form, checked.valid, body.submission, checked.rows)
    return EntriesOut(submission=landed.submission, rows=landed.rows, duplicate=landed.duplicate,
                      loaded=landed.loaded, load_id=landed.load_id)
