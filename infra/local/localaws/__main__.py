"""python -m localaws {up,down,status,seed,deploy,serve} — see launcher.py, seed.py, deploy.py."""

import argparse
import sys
from pathlib import Path

from . import launcher


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "seed":
        from . import seed
        return seed.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "deploy":
        from . import deploy
        return deploy.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        from . import server
        return server.main(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m localaws", description=launcher.__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "seed", "deploy", "serve"])
    parser.add_argument("--run-dir", type=Path, default=launcher.DEFAULT_RUN_DIR)
    parser.add_argument("--moto-port", type=int, default=0)
    parser.add_argument("--sfn-port", type=int, default=0)
    parser.add_argument("--no-ministack", action="store_true", help="fleet services only")
    parser.add_argument("--plain", action="store_true", help="moto without our extensions")
    args = parser.parse_args()
    if args.command == "up":
        launcher.up(args.run_dir, args.moto_port, args.sfn_port, not args.no_ministack, args.plain)
    elif args.command == "down":
        launcher.down(args.run_dir)
    else:
        sys.exit(launcher.status(args.run_dir))


if __name__ == "__main__":
    main()
