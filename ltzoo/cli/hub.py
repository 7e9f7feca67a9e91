"""``ltzoo card``, ``ltzoo push`` and ``ltzoo zoo``: the model card of a run folder, its upload, the catalogue.

ltzoo card RUN_DIR                                   # RUN_DIR/README.md
ltzoo card RUN_DIR --name NAME --repo-id ltzoo/NAME  # also hub_cards/NAME.md, the zoo's copy
ltzoo push RUN_DIR ltzoo/NAME [--private] [--revision BRANCH] [--dry-run]
ltzoo zoo [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

from ltzoo.cli.output import emit
from ltzoo.runfolder.layout import CARD, MODEL_CONFIG


def _parent_ids(values) -> list[str | None] | None:
    if not values:
        return None
    return [None if v in ("-", "") else v for v in values]


def _card_flags(p) -> None:
    p.add_argument("--name", default=None, help="the model's name in the card and the zoo")
    p.add_argument(
        "--parent-id",
        action="append",
        default=None,
        metavar="ORG/NAME",
        help="hub id of the run's parent (its --init), once per parent in order; '-' looks it up "
        "(the parent folder's card or results.json hub_id)",
    )


def _add_card(p) -> None:
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("--repo-id", default=None, help="the hub id it is (to be) pushed to, e.g. ltzoo/NAME")
    _card_flags(p)
    p.add_argument("--output", default=None, help="where to write the card (default: RUN_DIR/README.md)")
    p.add_argument(
        "--cards-dir",
        default=None,
        help="with --name, also write CARDS_DIR/NAME.md (default: the checkout's hub_cards/)",
    )
    p.add_argument("--stdout", action="store_true", help="print the card and write nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_card(args) -> int:
    """Generate the model card of a run folder (README.md; with --name also hub_cards/NAME.md)."""
    from ltzoo.files import atomic_path
    from ltzoo.hub.card import build_card, default_cards_dir

    card = build_card(args.run_dir, repo_id=args.repo_id, name=args.name, parent_ids=_parent_ids(args.parent_id))
    text = str(card)
    if args.stdout:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    targets = [Path(args.output) if args.output else Path(args.run_dir) / CARD]
    if args.name:
        targets.append(Path(args.cards_dir) if args.cards_dir else default_cards_dir())
        targets[-1] = targets[-1] / f"{args.name}.md"
    for path in targets:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    meta = card.data.to_dict()
    test = {r.metric_type: r.metric_value for r in card.data.eval_results or [] if r.dataset_split == "test"}
    out = {
        "written": [str(p) for p in targets],
        "name": meta["ltzoo"]["name"],
        "hub_id": args.repo_id,
        "test": test,
        "metadata": meta,
    }
    emit(
        out,
        args.json,
        "\n".join(f"wrote {p}" for p in targets) + "\ntest: " + ", ".join(f"{k} {v:.2f}" for k, v in test.items()),
    )
    return 0


def _add_push(p) -> None:
    p.add_argument("run_dir", help="a finished run folder (only read)")
    p.add_argument("repo_id", help="ORG/NAME on the Hub (created if missing)")
    p.add_argument(
        "--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)"
    )
    p.add_argument("--revision", default=None, help="branch to commit to (created from main if missing)")
    p.add_argument("--dry-run", action="store_true", help="show what would be uploaded; touch no network")
    p.add_argument("--commit-message", default=None)
    _card_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_push(args) -> int:
    """Upload a run folder (weights, config, results, plot, generated card) to the Hub in one commit."""
    from ltzoo.hub.push import push_run

    result = push_run(
        args.run_dir,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        dry_run=args.dry_run,
        name=args.name,
        parent_ids=_parent_ids(args.parent_id),
        commit_message=args.commit_message,
    )
    if args.dry_run:
        obj = {k: v for k, v in result.items() if k != "card"}
        lines = [
            f"dry run: would push to {result['repo_id']}@{result['revision']} at {result['endpoint']} "
            f"({'private' if result['private'] else 'public'} if created), in one commit "
            f"{result['commit_message']!r}:"
        ]
        lines += [f"  {f['path_in_repo']:<24} {f['bytes']:>12,d} bytes  {f['source']}" for f in result["files"]]
        lines.append(
            "token: "
            + ("found" if result["token_found"] else "NOT found (run `hf auth login` or set HF_TOKEN before pushing)")
        )
        emit(obj, args.json, "\n".join(lines))
        return 0
    from ltzoo.files import read_json
    from ltzoo.hub.card import is_ltzoo_arch

    arch = read_json(Path(args.run_dir) / MODEL_CONFIG).get("architecture", "")
    obj = {
        "repo_id": args.repo_id,
        "revision": args.revision or "main",
        "commit_url": result.commit_url,
        "commit": result.oid,
        "url": f"{result.repo_url}",
    }
    emit(
        obj,
        args.json,
        f"pushed {args.run_dir} to {args.repo_id}@{obj['revision']}: {result.commit_url}\n"
        f"load it with {'import ltzoo; ' if is_ltzoo_arch(arch) else ''}"
        f"timm.create_model('hf-hub:{args.repo_id}', pretrained=True)",
    )
    return 0


def _add_zoo(p) -> None:
    p.add_argument("--cards-dir", default=None, help="folder of the generated cards (default: hub_cards/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_zoo(args) -> int:
    """The zoo's catalogue (test-split numbers), read from the generated cards in hub_cards/."""
    from ltzoo.hub.card import default_cards_dir
    from ltzoo.hub.zoo import catalogue, catalogue_table

    cards_dir = Path(args.cards_dir) if args.cards_dir else default_cards_dir()
    entries = catalogue(cards_dir)
    text = (
        catalogue_table(entries)
        if entries
        else (f"no model cards in {cards_dir}; generate them with `ltzoo card RUN_DIR --name NAME --repo-id ORG/NAME`")
    )
    emit({"cards_dir": str(cards_dir), "models": entries}, args.json, text)
    return 0


COMMANDS = {"card": (cmd_card, _add_card), "push": (cmd_push, _add_push), "zoo": (cmd_zoo, _add_zoo)}
