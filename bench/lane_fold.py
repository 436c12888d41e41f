"""What a subscriber that fell behind costs the others, per event, with no network.

``python bench/lane_fold.py [--events N] [--keys K] [--fast F]`` pushes N MODIFIED events
over K objects into F caught-up subscribers' lanes (sync callbacks, called directly), then
into the same F plus one lane whose reader is stuck (``overflow="wait"``, buffer full): each
event that lane gets is folded into its pending state. It prints the time per event of both
and their difference, the cost of the lagging subscriber (best of several rounds). This is
crwatch's internal ``Lane`` (``crwatch._lanes``), so it measures the working tree.
"""

from __future__ import annotations

import argparse
import time

from crwatch._events import Event, EventType, new_event
from crwatch._lanes import Lane


def _direct() -> Lane:
    lane = Lane("fast", 100)
    lane.direct = lambda event: None
    return lane


def _per_event_us(events: list[Event], lanes: list[Lane]) -> float:
    t0 = time.perf_counter()
    for event in events:
        for lane in lanes:
            lane.push(event)
    return (time.perf_counter() - t0) / len(events) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=2_000)
    ap.add_argument("--fast", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    events = [
        new_event(
            EventType.MODIFIED,
            {"metadata": {"name": f"w{i % args.keys}", "resourceVersion": str(i)}},
            f"default/w{i % args.keys}",
            None,
        )
        for i in range(args.events)
    ]
    alone, beside = [], []
    folded = 0
    for _ in range(args.rounds):
        alone.append(_per_event_us(events, [_direct() for _ in range(args.fast)]))
        stuck = Lane("stuck", 100, "wait")
        beside.append(_per_event_us(events, [*(_direct() for _ in range(args.fast)), stuck]))
        folded = stuck.coalesced
    a, b = min(alone), min(beside)
    print(f"{args.events:,} events over {args.keys:,} objects, best of {args.rounds}:")
    rows = [
        (f"{args.fast} caught-up subscribers", a),
        (f"the same + 1 stuck ({folded:,} folded)", b),
        ("the stuck one's cost", b - a),
    ]
    for label, us in rows:
        print(f"  {label:40} {us:.3f} µs/event")


if __name__ == "__main__":
    main()
