"""What the fault-injection run checks in the database once every request has ended: each request
reached the end its plan leads to, no timer fired twice or got lost (timer rows, their audit rows and
their side effects agree), and every transition has its audit row. Plain SQL on the shared database:
the check does not trust the product's own read API. Only the after-sales instances are looked at (the
seeded sales data runs processes of its own, with timers days away)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from .fault_driver import Tracked

# A timer's element → the work-order event its firing writes (one per firing).
TIMER_EVENTS = {"offer_timeout": "offer_timeout", "unassigned_too_long": "escalated",
                "response_warning": "sla_response_warning", "response_breach": "sla_response_breach",
                "resolution_warning": "sla_resolution_warning", "resolution_breach": "sla_resolution_breach"}
STEPS = ("reported", "offered", "accepted", "on_site", "work_done", "closed")


@dataclass
class Findings:
    """Numbers for the summary and the list of failures (empty: PASS)."""

    failures: list[str] = field(default_factory=list)
    numbers: dict[str, object] = field(default_factory=dict)

    def fail(self, what: str, items: list) -> None:
        """Record a failed check with up to five examples."""
        if items:
            self.failures.append(f"{what}: {len(items)} (e.g. {', '.join(map(str, items[:5]))})")


def _rows(conn, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


def check(database_url: str, requests: dict[int, Tracked], late_tolerance: float) -> Findings:
    """Run every check; ``late_tolerance`` (s) is how long after its due time a timer may still be
    cancelled without counting as lost (the poll interval plus a redelivery window plus slack)."""
    found = Findings()
    with psycopg.connect(database_url) as conn:
        _end_states(conn, requests, found)
        timers = _timers(conn, requests, found, late_tolerance)
        _audit(conn, requests, timers, found)
        _side_effects(conn, requests, timers, found)
        _plans(conn, requests, timers, found)
        busy = _rows(conn, "SELECT id, open_jobs FROM engineers WHERE open_jobs <> 0")
        found.fail("engineers still counted busy after every job closed", [f"engineer {i}: {n}" for i, n in busy])
    return found


def _end_states(conn, requests: dict[int, Tracked], found: Findings) -> None:
    rows = _rows(conn, "SELECT r.id, r.status, i.status FROM service_requests r "
                       "JOIN process_instances i ON i.id = r.instance_id")
    states = Counter((request_status, instance_status) for _, request_status, instance_status in rows)
    found.numbers["end states"] = ", ".join(f"{n} {r}/{i}" for (r, i), n in states.most_common())
    found.fail("requests not closed with their process completed",
               [f"#{i} {r}/{s}" for i, r, s in rows if (r, s) != ("closed", "completed")])
    found.fail("requests opened but unknown to the driver (or lost by it)",
               sorted({i for i, _, _ in rows} ^ set(requests)))
    incidents = _rows(conn, "SELECT instance_id, element_id, message FROM incidents")
    found.fail("incidents", [f"instance {i} at {e}: {m[:80]}" for i, e, m in incidents])


def _timers(conn, requests, found: Findings, late_tolerance: float) -> list[tuple]:
    timers = _rows(conn, "SELECT t.id, t.instance_id, t.element_id, t.due_at, t.fired_at, t.cancelled_at "
                         "FROM timers t JOIN service_requests r ON r.instance_id = t.instance_id")
    fired = [t for t in timers if t[4] is not None]
    found.numbers["timers"] = (f"{len(timers)} rows: {len(fired)} fired, "
                               f"{sum(t[5] is not None for t in timers)} cancelled, "
                               f"{sum(t[4] is None and t[5] is None for t in timers)} pending")
    found.numbers["timers fired by element"] = ", ".join(
        f"{element} {n}" for element, n in sorted(Counter(t[2] for t in fired).items()))
    lateness = sorted((t[4] - t[3]).total_seconds() for t in fired)
    if lateness:
        found.numbers["timer lateness (fired − due)"] = (
            f"p50 {lateness[len(lateness) // 2]:.1f} s, p99 {lateness[int(len(lateness) * 0.99)]:.1f} s, "
            f"max {lateness[-1]:.1f} s")
    found.fail("timers neither fired nor cancelled (lost)", [f"timer {t[0]} {t[2]}" for t in timers
                                                              if t[4] is None and t[5] is None])
    slack = timedelta(seconds=late_tolerance)
    found.fail(f"timers cancelled more than {late_tolerance:g} s after they were due (never fired: lost)",
               [f"timer {t[0]} {t[2]} +{(t[5] - t[3]).total_seconds():.0f} s" for t in timers
                if t[5] is not None and t[5] - t[3] > slack])
    return timers


def _audit(conn, requests, timers, found: Findings) -> None:
    audit = _rows(conn, "SELECT a.instance_id, a.event, a.data FROM audit_events a "
                        "JOIN service_requests r ON r.instance_id = a.instance_id")
    events = Counter((instance_id, event) for instance_id, event, _ in audit)
    found.numbers["audit rows"] = len(audit)
    fired_audit = Counter(data["timer_id"] for _, event, data in audit if event == "timer_fired")
    fired_ids = {t[0] for t in timers if t[4] is not None}
    found.fail("timers fired twice (two timer_fired audit rows)", [f"timer {i}" for i, n in fired_audit.items()
                                                                   if n > 1])
    found.fail("fired timers without their timer_fired audit row", sorted(fired_ids - set(fired_audit)))
    found.fail("timer_fired audit rows of timers not fired", sorted(set(fired_audit) - fired_ids))
    completed_audit = Counter(data["task_id"] for _, event, data in audit if event == "task_completed")
    done = {row[0] for row in _rows(conn, "SELECT t.id FROM human_tasks t JOIN service_requests r "
                                          "ON r.instance_id = t.instance_id WHERE t.status = 'completed'")}
    found.fail("completed tasks without exactly one task_completed audit row",
               sorted(t for t in done if completed_audit[t] != 1))
    found.fail("task_completed audit rows of tasks not completed", sorted(set(completed_audit) - done))
    instances = {t.instance_id for t in requests.values()}
    for event in ("started", "completed"):
        found.fail(f"instances without exactly one '{event}' audit row",
                   sorted(i for i in instances if events[(i, event)] != 1))
    rated = {row[0] for row in _rows(conn, "SELECT r.instance_id FROM ratings g "
                                           "JOIN service_requests r ON r.id = g.request_id")}
    found.fail("ratings without their message_received audit row",
               sorted(i for i in rated if events[(i, "message_received")] != 1))
    found.fail("error audit rows", sorted(i for (i, event) in events if event == "error"))


def _side_effects(conn, requests, timers, found: Findings) -> None:
    """Each firing did its work once: the work-order events it writes match the fired timer rows."""
    instance_of = dict(_rows(conn, "SELECT id, instance_id FROM service_requests"))
    logged = Counter((instance_of[r], status) for r, status in _rows(
        conn, "SELECT request_id, status FROM work_order_events"))
    fired = Counter((t[1], TIMER_EVENTS[t[2]]) for t in timers if t[4] is not None and t[2] in TIMER_EVENTS)
    keys = {k for k in logged if k[1] in TIMER_EVENTS.values()} | set(fired)
    found.fail("timer side effects not matching the fired timers (instance, event: logged/fired)",
               [f"{k}: {logged[k]}/{fired[k]}" for k in sorted(keys) if logged[k] != fired[k]])
    paid = {instance_of[r] for (r,) in _rows(conn, "SELECT request_id FROM payments")}
    rated = {instance_of[r] for (r,) in _rows(conn, "SELECT request_id FROM ratings")}
    missing = []
    for tracked in requests.values():
        i = tracked.instance_id
        missing += [f"#{tracked.id} {step}" for step in STEPS if not logged[(i, step)]]
        if bool(logged[(i, "paid")]) != (i in paid) or bool(logged[(i, "rated")]) != (i in rated):
            missing.append(f"#{tracked.id} paid/rated")
    found.fail("requests missing a step in their work-order log", missing)


def _plans(conn, requests, timers, found: Findings) -> None:
    """The end each plan leads to: ratings, follow-ups, the rating window, declines, visits, breaches."""
    stars = dict(_rows(conn, "SELECT request_id, stars FROM ratings"))
    rows = {r[0]: r for r in _rows(conn, "SELECT id, visits, declined_engineer_ids FROM service_requests")}
    follow_ups = {row[0] for row in _rows(conn, "SELECT instance_id FROM human_tasks WHERE element_id = "
                                                "'follow_up_low_rating' AND status = 'completed'")}
    fired = defaultdict(set)
    for t in timers:
        if t[4] is not None:
            fired[t[1]].add(t[2])
    wrong, plans = [], Counter()
    for tracked in requests.values():
        plan, i = tracked.plan, tracked.instance_id
        plans[plan.name] += 1
        _, visits, declined = rows[tracked.id]
        expected = [
            (stars.get(tracked.id) == plan.stars, "rating"),
            (("await_rating" in fired[i]) == (plan.stars is None), "rating window"),
            ((i in follow_ups) == (plan.stars is not None and plan.stars <= 2), "low-rating follow-up"),
            (plan.first_offer == "accept" or len(declined or []) >= 1, "first offer refused"),
            (plan.first_offer != "ignore" or "offer_timeout" in fired[i], "offer timeout"),
            (visits == (2 if plan.revisit else 1), "visits"),
            (not plan.wait_for_breach or "response_breach" in fired[i], "response breach"),
        ]
        wrong += [f"#{tracked.id} ({plan.name}): {what}" for ok, what in expected if not ok]
    found.numbers["plans"] = ", ".join(f"{name} {n}" for name, n in plans.most_common())
    found.fail("requests that did not end as their plan says", wrong)
