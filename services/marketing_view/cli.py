"""``python -m services.marketing_view rebuild``: rebuild the read model from the full history, with a
progress bar, while the running instances keep serving the current generation."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from services.marketing_view.config import Settings
from services.marketing_view.generations import delete_other_generations
from services.marketing_view.keys import KeySpace
from services.marketing_view.rebuild import Progress as RebuildProgress
from services.marketing_view.rebuild import RebuildAborted, RebuildBusy


def rebuild_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.marketing_view rebuild",
        description="Replay the domain topics into a fresh Redis key space and switch to it atomically.",
    )
    parser.add_argument("--grace", type=float, default=None,
                        help="seconds to keep the old generation after the switch (default: cleanup_grace_s)")
    parser.add_argument("--keep-old", action="store_true", help="do not remove the old generation")
    args = parser.parse_args(argv)
    settings = Settings()
    from shared.logging import configure_logging

    configure_logging("marketing_view", "WARNING")
    return asyncio.run(_rebuild(settings, args.grace if args.grace is not None else settings.cleanup_grace_s,
                                args.keep_old))


async def _rebuild(settings: Settings, grace_s: float, keep_old: bool) -> int:
    from services.marketing_view.app import make_rebuilder, open_redis

    console = Console(stderr=True)
    redis = open_redis(settings)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task("settling", total=None)

    def report(progress: RebuildProgress) -> None:
        bar.update(task, description=f"{progress.phase} {progress.generation}", completed=progress.done,
                   total=progress.total or None)

    try:
        with bar:
            gen = await make_rebuilder(settings, redis, None, report).run("command")
        console.print(f"[green]switched[/green] {settings.key_prefix}:current -> {gen}")
        if not keep_old:
            console.print(f"removing the previous generation in {grace_s:.0f} s (readers finish with it first)")
            await asyncio.sleep(grace_s)
            removed = await delete_other_generations(redis, KeySpace(settings.key_prefix), keep={gen})
            console.print(f"removed {removed} key(s) of previous generations")
        return 0
    except RebuildBusy as exc:
        console.print(f"[red]{exc}[/red]: wait for it, or see /readyz of a running instance")
        return 2
    except RebuildAborted as exc:
        console.print(f"[red]rebuild aborted[/red]: {exc}")
        return 1
    finally:
        await redis.aclose()
