"""`abx image build`: the endpoint image ``abx-endpoint:<git sha>``, built offline with the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load

image_app = typer.Typer(help="The endpoint container image (serving.backend: docker).",
                        no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("build")
def build(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    tag: Annotated[str | None, typer.Option(help="Tag (default abx-endpoint:<git sha>).")] = None,
    keep: Annotated[int | None, typer.Option(
        min=1, help="Keep this many newest abx-built images, remove older tags "
                    "(default serving.docker.keep_images).")] = None,
) -> None:
    """Build the endpoint image (base image and wheels are made once and reused), then remove
    abx-endpoint images it built beyond the newest ``keep`` (never one a container uses)."""
    from pipeline_components.deploy.image import build_image

    keep = keep or load(params, set_).serving.docker.keep_images
    res = build_image(tag=tag, keep=keep,
                      log=lambda m: console.print(m, markup=False, highlight=False))
    console.print(f"built {', '.join(res.tags)} ({res.image_id[:19]}), "
                  f"{res.size_bytes / 1e6:.0f} MB, {len(res.rebuilt)} of {res.steps} steps "
                  f"rebuilt, {res.seconds:.1f} s; {len(res.pruned)} old tags removed",
                  markup=False, highlight=False)
    print(res.tag)
