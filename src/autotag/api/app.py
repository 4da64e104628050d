"""The FastAPI app: thin handlers that read the request, call `Service` in a worker thread, answer JSON.

No ML and no SQL here. Every blocking call (decoding, inference, database) goes through
`anyio.to_thread.run_sync` so the event loop only ever moves bytes.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at runtime.
import hmac
import os
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from autotag.api.errors import ApiError, BodyLimit, install_error_handlers
from autotag.api.service import Service
from autotag.config import Settings, load_settings
from autotag.usertags import parse_user_tags

WEB_DIR = Path(__file__).parent / "web"
ACCEPTED_UPLOAD_TYPES = ("image/", "application/octet-stream")
CHUNK = 1 << 16
MULTIPART_SLACK = 1 << 20  # form fields and multipart framing around the file itself
MAX_IMAGE_ID = 2**63 - 1  # database ids are signed 64-bit; a bigger number is no id at all (422, not 500)

ImageId = Annotated[int, PathParam(ge=1, le=MAX_IMAGE_ID, description="a stored image's id")]
# Text a database can store: PostgreSQL refuses NUL characters, so they are refused at the door (422).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]


# ----- response and request bodies (they also document the API at /docs) -----


class TagOut(BaseModel):
    name: str
    id: str = Field(
        "", description="the source class: a WordNet id, coco:NAME, style:NAME, learned:NAME, or the label itself"
    )
    score: float
    kind: Literal["leaf", "ancestor", "label", "hashtag", "category", "object", "style", "learned"] = "leaf"
    detail: str | None = Field(None, description="a breed or species the model is sure of")


class ObjectOut(BaseModel):
    name: str = Field(description="the object in the vocabulary's words (table)")
    label: str = Field(description="the detector's class (dining table)")
    score: float
    box: list[float] | None = Field(
        description="x0, y0, x1, y1 in the picture's pixels (upright), y down; null when the classifier alone named it"
    )
    source: Literal["detector", "classifier"] = Field(
        "detector", description="who found it: the object detector (with a box) or the classifier alone (no box)"
    )


class ColorOut(BaseModel):
    name: str = Field(description="a palette name, or 'black and white'")
    share: float = Field(description="fraction of the picture")
    hex: str = Field(description="the mean colour of those pixels, #rrggbb")


class StyleOut(BaseModel):
    kind: Literal["photo", "art"]
    style: str = Field(description="photo, or an art style: abstract, illustration, 3d render, pattern")
    score: float | None = None
    style_score: float | None = None


class PropertiesOut(BaseModel):
    width: int
    height: int
    orientation: str
    shape: str
    aspect_ratio: str
    resolution: str
    megapixels: float
    lightness: float | None = None
    tone: str | None = None


class Facets(BaseModel):
    """What else the picture has, kept apart from its tags."""

    objects: list[ObjectOut] = []
    object_counts: dict[str, int] = {}
    colors: list[ColorOut] = []
    style: StyleOut | None = None
    properties: PropertiesOut | None = None


class FlaggedTag(BaseModel):
    tag: str
    reason: str
    score: float | None = None


class TagResponse(Facets):
    model: str
    content_hash: str
    width: int
    height: int
    tags: list[TagOut]
    hashtags: list[TagOut] = []
    flagged_user_tags: list[FlaggedTag] = []
    cannot_judge_user_tags: list[str] = Field([], description="user tags the model has no concept for")
    out_of_domain: bool | None = Field(None, description="True: the image is unlike anything the hashtags know")
    ood_score: float | None = None


class ImageOut(Facets):
    id: int
    content_hash: str
    source: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    size_bytes: int | None = None
    added_at: str | None = None
    model: str | None = None
    tags: list[TagOut] = []
    user_tags: list[str] = []
    accepted_tags: list[str] = Field([], description="tags after feedback: added first, rejected and flagged out")
    feedback: list[dict[str, Any]] = []
    thumbnail_url: str


class IngestResponse(ImageOut):
    created: bool
    hashtags: list[TagOut] = []
    flagged_user_tags: list[FlaggedTag] = []
    cannot_judge_user_tags: list[str] = []


class ImagePage(BaseModel):
    items: list[ImageOut]
    limit: int
    offset: int
    next_offset: int | None
    total: int | None = None
    tag: str | None = None
    color: str | None = None
    style: str | None = None
    object: str | None = None


class SimilarHit(BaseModel):
    id: int
    score: float
    source: str
    thumbnail_url: str
    tags: list[TagOut] = []
    accepted_tags: list[str] = []


class SimilarResponse(BaseModel):
    query_id: int | None = None
    results: list[SimilarHit]


class FeedbackIn(BaseModel):
    accept: list[Text] = Field(default_factory=list, description="tags the person confirms")
    reject: list[Text] = Field(default_factory=list, description="tags the person says are wrong")
    add: list[Text] = Field(default_factory=list, description="tags the person adds")
    who: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class ExamplesIn(BaseModel):
    examples: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_ID)]] = Field(
        default_factory=list, max_length=1000, description="ids of stored images that show the tag"
    )
    rejections: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_ID)]] = Field(
        default_factory=list, max_length=1000, description="ids of stored images that do not"
    )
    suggestions: int = Field(12, ge=0, le=100, description="how many images to suggest judging next")


class LearnedHit(BaseModel):
    id: int
    path: str
    score: float = Field(description="the tag's confidence: 0.5 at its threshold")
    thumbnail_url: str


class LearnedTagOut(BaseModel):
    tag: str
    version: int = Field(description="the model version (one more on every change)")
    examples: int
    rejections: int
    summary: str = Field(description='e.g. "learned from 7 examples, 3 rejections"')
    threshold: float
    estimated_precision: float | None = Field(None, description="at the threshold; null: a cautious fallback")
    images: list[LearnedHit] = Field(description="the stored images carrying the tag, best first")
    suggestions: list[LearnedHit] = Field(description="images to judge next, the least sure first")


class LearnedTagSummary(BaseModel):
    name: str
    version: int
    examples: int
    rejections: int
    images: int
    created_at: str | None = None
    updated_at: str | None = None


class LearnedTagList(BaseModel):
    tags: list[LearnedTagSummary]


class FeedbackOut(BaseModel):
    image_id: int
    stored: int
    feedback: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    version: str
    model: str
    model_loaded: bool
    database: str
    images: int | None = None


class ErrorOut(BaseModel):
    error: str
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 404, 413, 415, 422)}


# ----- helpers -----


async def read_upload(upload: Any, max_bytes: int) -> bytes:
    """Read an upload, refusing a wrong content type or more than `max_bytes` (without buffering it all)."""
    content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not content_type.startswith(ACCEPTED_UPLOAD_TYPES):
        raise ApiError(
            415,
            "unsupported media type",
            f"upload has content type {content_type!r}; send an image (image/jpeg, image/png, ...)",
        )
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                413,
                "upload too large",
                f"upload is over the limit of {max_bytes} bytes (server setting max_upload_bytes)",
            )
        parts.append(chunk)
    if size == 0:
        raise ApiError(422, "unusable image", "empty file (0 bytes)")
    return b"".join(parts)


def parse_keys(value: str | None) -> frozenset[str]:
    return frozenset(k.strip() for k in (value or "").split(",") if k.strip())


def _serve_docs_offline(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the copies the fastapi-offline package ships, so the API's
    documentation works on a machine without a network (FastAPI's defaults fetch both from a CDN).
    ReDoc still asks for its own small footer logo, and hides it when that fails."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            # the default asks validator.swagger.io to check the schema (a badge) from every non-local host
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


# ----- the app -----


def create_app(
    settings: Settings | None = None,
    *,
    db: str | None = None,
    protect_reads: bool = False,
    preload: bool = False,
    service: Service | None = None,
) -> FastAPI:
    """Build the app. Models load lazily on the first request that needs them (or on `warm()`).

    settings: defaults from `load_settings()`. db: library database (None = the default SQLite file).
    protect_reads: when API keys are configured, also require a key for read endpoints.
    preload: load the model and the vector index at start-up instead of on the first request.
    """
    settings = settings or load_settings()
    service = service or Service(settings, db=db)
    keys = parse_keys(settings.api_keys) | parse_keys(os.environ.get("AUTOTAG_API_KEYS"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if preload:
            await anyio.to_thread.run_sync(service.warm)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="autotag",
        lifespan=lifespan,
        version=service.version,
        summary="Tag images automatically, keep a searchable library, learn from corrections.",
        docs_url=None,  # served below from local files: the defaults load Swagger UI / ReDoc from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _serve_docs_offline(app)
    app.state.service = service
    install_error_handlers(app)
    # A body past this is refused while it streams in, before it is spooled to disk.
    limit = settings.max_upload_bytes
    app.add_middleware(BodyLimit, max_bytes=limit + MULTIPART_SLACK, limit=limit)

    def require_key(request: Request) -> None:
        if not keys:
            return
        given = request.headers.get("x-api-key", "")
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            raise ApiError(401, "unauthorized", "this endpoint needs a valid X-API-Key header")

    write_guard = [Depends(require_key)]
    read_guard = write_guard if protect_reads else []

    async def call(func: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))

    limit = settings.max_upload_bytes

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and readiness: answers without loading the model."""
        return await call(service.health)

    # Optional form fields are typed without `| None`: a form cannot send a null, so the schema must not
    # offer one (leaving the field out means "the server's default").
    @app.post("/v1/tag", response_model=TagResponse, responses=ERRORS, dependencies=read_guard, tags=["tagging"])
    async def tag_image(
        file: UploadFile = File(..., description="the image"),
        user_tags: str = Form(None, pattern=NO_NUL, description="tags typed by the uploader, comma-separated"),
        model: str = Form(None, pattern=NO_NUL, description="model name (default: the server's model)"),
        top_k: int = Form(None, ge=1, le=100, description="at most this many leaf tags"),
        threshold: float = Form(None, ge=0.0, le=1.0, description="minimum score of a tag"),
    ) -> dict[str, Any]:
        """Tag one image without storing anything."""
        data = await read_upload(file, limit)
        return await call(
            service.tag, data, user_tags=parse_user_tags(user_tags), model=model, top_k=top_k, threshold=threshold
        )

    @app.post(
        "/v1/tag/keywords",
        response_class=Response,
        responses={**ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}}}},
        dependencies=read_guard,
        tags=["tagging"],
    )
    async def tag_into_file(
        file: UploadFile = File(..., description="a JPEG or PNG image"),
        user_tags: str = Form(None, pattern=NO_NUL, description="tags typed by the uploader, comma-separated"),
        model: str = Form(None, pattern=NO_NUL, description="model name (default: the server's model)"),
        top_k: int = Form(None, ge=1, le=100, description="at most this many leaf tags"),
        threshold: float = Form(None, ge=0.0, le=1.0, description="minimum score of a tag"),
        replace: bool = Form(False, description="drop the keywords the file already has"),
        colors: bool = Form(False, description="also write the dominant colour names as keywords"),
    ) -> Response:
        """Tag one image and answer with the same file, its tags written in as XMP dc:subject and IPTC Keywords.

        Pixels are untouched (checked); the tags are also listed in the X-Autotag-Tags header. Nothing is stored.
        """
        data = await read_upload(file, limit)
        tagged, names, media_type = await call(
            service.tag_into_file, data, replace=replace, colors=colors, user_tags=parse_user_tags(user_tags),
            model=model, top_k=top_k, threshold=threshold,
        )  # fmt: skip
        return Response(tagged, media_type=media_type, headers={"X-Autotag-Tags": quote(",".join(names))})

    @app.post(
        "/v1/images",
        response_model=IngestResponse,
        responses=ERRORS,
        dependencies=write_guard,
        tags=["library"],
    )
    async def ingest_image(
        response: Response,
        file: UploadFile = File(..., description="the image"),
        user_tags: str = Form(None, pattern=NO_NUL, description="tags typed by the uploader, comma-separated"),
        model: str = Form(None, pattern=NO_NUL, description="model name (default: the server's model)"),
    ) -> dict[str, Any]:
        """Store, tag and index an image. The same content twice gives the same id and adds nothing."""
        data = await read_upload(file, limit)
        result = await call(
            service.ingest, data, filename=file.filename or "", user_tags=parse_user_tags(user_tags), model=model
        )
        response.status_code = 201 if result["created"] else 200
        return result

    @app.get("/v1/images", response_model=ImagePage, responses=ERRORS, dependencies=read_guard, tags=["library"])
    async def list_images(
        tag: str | None = Query(None, max_length=200, pattern=NO_NUL, description="only images with this tag"),
        color: str | None = Query(None, max_length=32, pattern=NO_NUL,
                                  description="only images with this dominant colour (blue)"),
        style: str | None = Query(None, max_length=32, pattern=NO_NUL,
                                  description="photo, art, or an art style (abstract)"),
        object: str | None = Query(None, max_length=200, pattern=NO_NUL,  # noqa: A002
                                   description="only images with this object (person)"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=MAX_IMAGE_ID),
    ) -> dict[str, Any]:
        """Page through the library, newest first, optionally by tag, colour, style and object (all must match)."""
        return await call(service.list_images, tag=tag or None, color=color or None, style=style or None,
                          object=object or None, limit=limit, offset=offset)  # fmt: skip

    @app.get(
        "/v1/images/{image_id}",
        response_model=ImageOut,
        responses=ERRORS,
        dependencies=read_guard,
        tags=["library"],
    )
    async def get_image(image_id: ImageId) -> dict[str, Any]:
        return await call(service.get_image, image_id)

    @app.get(
        "/v1/images/{image_id}/thumbnail",
        responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
        dependencies=read_guard,
        tags=["library"],
    )
    async def thumbnail(image_id: ImageId, size: int = Query(256, ge=16, le=1024)) -> Response:
        """A small JPEG of a stored image (for grids)."""
        data = await call(service.thumbnail, image_id, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @app.delete(
        "/v1/images/{image_id}",
        status_code=204,
        response_class=Response,
        response_model=None,
        responses=ERRORS,
        dependencies=write_guard,
        tags=["library"],
    )
    async def delete_image(image_id: ImageId) -> Response:
        await call(service.delete_image, image_id)
        return Response(status_code=204)

    @app.post(
        "/v1/similar",
        response_model=SimilarResponse,
        responses=ERRORS,
        dependencies=read_guard,
        tags=["library"],
    )
    async def similar(
        file: UploadFile = File(None, description="an image to search with"),
        id: int = Form(None, ge=1, le=MAX_IMAGE_ID, description="or the id of a stored image"),  # noqa: A002
        k: int = Form(10, ge=1, le=100),
    ) -> dict[str, Any]:
        """Images in the library that look like an uploaded image or a stored one."""
        if (file is None) == (id is None):
            raise ApiError(422, "invalid request", "send exactly one of: an image file, or the id of a stored image")
        data = await read_upload(file, limit) if file is not None else None
        return await call(service.similar, data=data, image_id=id, k=k)

    @app.post(
        "/v1/images/{image_id}/feedback",
        response_model=FeedbackOut,
        responses=ERRORS,
        dependencies=write_guard,
        tags=["library"],
    )
    async def feedback(image_id: ImageId, body: FeedbackIn) -> dict[str, Any]:
        """Accept, reject or add tags; stored for re-fitting thresholds (`autotag refit`)."""
        return await call(
            service.feedback, image_id, accept=body.accept, reject=body.reject, add=body.add, who=body.who
        )

    TagName = Annotated[str, PathParam(min_length=1, max_length=200, pattern=NO_NUL, description="a tag")]

    @app.get("/v1/tags", response_model=LearnedTagList, responses=ERRORS, dependencies=read_guard, tags=["learned"])
    async def learned_tags() -> dict[str, Any]:
        """The tags the library learned by example, with their example and rejection counts."""
        return await call(service.learned_tags)

    @app.post(
        "/v1/tags/{tag}/examples",
        response_model=LearnedTagOut,
        responses=ERRORS,
        dependencies=write_guard,
        tags=["learned"],
    )
    async def teach(tag: TagName, body: ExamplesIn) -> dict[str, Any]:
        """Teach the library a tag by example: stored images that show it and, as rejections, ones that do not.
        The tag's model is retrained and the library re-tagged; the answer lists the images carrying it and
        the ones to judge next. A tag needs at least one example; an unknown id changes nothing (404)."""
        return await call(service.teach, tag, body.examples, body.rejections, body.suggestions)

    @app.get(
        "/v1/tags/{tag}", response_model=LearnedTagOut, responses=ERRORS, dependencies=read_guard, tags=["learned"]
    )
    async def learned_tag(tag: TagName, suggestions: int = Query(12, ge=0, le=100)) -> dict[str, Any]:
        """A learned tag as it stands: its images, best first, and the ones to judge next."""
        return await call(service.learned_tag, tag, suggestions)

    @app.delete(
        "/v1/tags/{tag}",
        status_code=204,
        response_class=Response,
        response_model=None,
        responses=ERRORS,
        dependencies=write_guard,
        tags=["learned"],
    )
    async def forget_tag(tag: TagName) -> Response:
        """Forget a learned tag: its examples, models and the tag on every image; the images stay."""
        await call(service.forget_tag, tag)
        return Response(status_code=204)

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    return app
