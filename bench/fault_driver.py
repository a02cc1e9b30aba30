"""The people of the fault-injection run, all over HTTP: a dispatcher who opens service requests
through the API and dispatches the ones nobody took once they were escalated, engineers who act on
their offers through the mobile API (accept, ignore, decline, travel, repair, take payment,
complete), customers who rate on the public page, and a service manager who closes every review and
follow-up task. Each request follows a plan chosen by its number, so the expected end is known."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Plan:
    """How the people treat one request."""

    name: str
    first_offer: str = "accept"  # accept | ignore (let it time out) | decline
    wait_for_breach: bool = False  # accept only once the response SLA breach has reached the service manager
    revisit: bool = False  # the first visit does not fix it
    stars: int | None = 5  # the customer's rating; None: never rates (the rating window closes the case)


HAPPY = Plan("happy")
UNRATED = Plan("unrated", stars=None)
IGNORED = Plan("offer ignored", first_offer="ignore", stars=4)
DECLINED = Plan("offer declined", first_offer="decline", stars=1)
REVISIT = Plan("second visit", revisit=True, stars=None)
LATE = Plan("response breached", wait_for_breach=True, stars=3)
# Twenty requests in a row get these plans; request n gets PLANS[n % 20].
PLANS = [HAPPY] * 8 + [UNRATED] * 2 + [IGNORED] * 3 + [DECLINED] * 2 + [REVISIT] * 2 + [LATE] * 3


@dataclass
class Tracked:
    """What the driver knows about one request it opened."""

    id: int
    instance_id: int
    plan: Plan
    offers: int = 0
    offered_to: int | None = None
    declined: bool = False
    visits: int = 0
    paid: bool = False
    completed: bool = False
    rated: bool = False
    breach_seen: bool = False
    busy: bool = False
    settled: float = 0.0  # when its last action ended: rows read before that are stale


class Http:
    """A keep-alive HTTP client spreading calls over the web processes like a load balancer; it counts
    every response status and keeps the details of every 5xx and every transport failure."""

    IDLE_SECONDS = 2.0  # gunicorn closes idle keep-alive connections after 5 s: reconnect well before

    def __init__(self, ports: list[int]):
        self.ports = ports
        self.local = threading.local()
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.server_errors: list[str] = []
        self.transport_errors: list[str] = []
        self.count = 0

    def _connection(self, port: int) -> http.client.HTTPConnection:
        conns = self.local.__dict__.setdefault("conns", {})
        conn, used = conns.get(port, (None, 0.0))
        if conn is not None and time.monotonic() - used > self.IDLE_SECONDS:
            conn.close()
            conn = None
        return conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, *, token: str | None = None, body: dict | None = None,
             form: dict | None = None, idempotency_key: str | None = None) -> tuple[int, object]:
        """One request; returns (status, parsed body). Retried on another web process only when it is safe
        (GET, or a POST with an Idempotency-Key); status 0 means it could not be delivered."""
        headers = {"User-Agent": "flowdesk-fault-injection"}
        payload = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if body is not None:
            payload, headers["Content-Type"] = json.dumps(body), "application/json"
        elif form is not None:
            payload, headers["Content-Type"] = urllib.parse.urlencode(form), "application/x-www-form-urlencoded"
        turn = self.local.__dict__.get("turn", hash(threading.get_ident()))
        for attempt in range(3):
            port = self.ports[(turn + attempt) % len(self.ports)]
            self.local.turn = turn + 1
            conn = self._connection(port)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                self.local.conns.pop(port, None)
                with self.lock:
                    self.transport_errors.append(f"{method} {path} on :{port}: {err!r}")
                if method == "GET" or idempotency_key:
                    continue
                return 0, None
            self.local.conns[port] = (conn, time.monotonic())
            with self.lock:
                self.count += 1
                self.statuses[response.status] += 1
                if response.status >= 500:
                    self.server_errors.append(f"{method} {path} on :{port} → {response.status}: {raw[:300]!r}")
            if "json" in (response.getheader("Content-Type") or ""):
                return response.status, json.loads(raw)
            return response.status, raw.decode(errors="replace")
        return 0, None


@dataclass
class Driver:
    """Opens the requests and plays every person until each request is closed and its process ended."""

    http: Http
    passwords: dict[str, str]
    requests: dict[int, Tracked] = field(default_factory=dict)
    by_instance: dict[int, Tracked] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    engineer_token: dict[int, str] = field(default_factory=dict)
    engineers: list[dict] = field(default_factory=list)
    overrides: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    actions: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=24, thread_name_prefix="person")
        self.busy_tasks: set[int] = set()
        self.done_tasks: set[int] = set()

    # -- setup ---------------------------------------------------------------------------------
    def log_in(self) -> None:
        """Tokens for the dispatcher, the service manager, the admin and every engineer (mapped to their id)."""
        for username in ("dispatcher", "servicemanager", "admin"):
            self.tokens[username] = self._token("/api/v1/auth/token", username)
        status, engineers = self.http.call("GET", "/api/v1/engineers", token=self.tokens["dispatcher"])
        self._expect(status, 200, "list engineers", engineers)
        self.engineers = engineers
        usernames = [u for u in self.passwords if u == "engineer" or u.startswith("eng")]

        def engineer(username: str) -> None:
            token = self._token("/api/mobile/v1/auth/token", username)
            status, me = self.http.call("GET", "/api/mobile/v1/me", token=token)
            self._expect(status, 200, f"profile of {username}", me)
            self.engineer_token[me["id"]] = token

        list(self.pool.map(engineer, usernames))

    def _token(self, path: str, username: str) -> str:
        status, answer = self.http.call("POST", path, body={"username": username,
                                                            "password": self.passwords[username]})
        self._expect(status, 200, f"log in {username}", answer)
        return answer["access_token"]

    def _expect(self, status: int, wanted: int, what: str, answer) -> None:
        if status != wanted:
            raise RuntimeError(f"{what}: HTTP {status} {answer}")

    # -- intake -------------------------------------------------------------------------------------
    def open_request(self, n: int, asset_id: int) -> None:
        """The dispatcher opens request number ``n`` on an asset through the API."""
        priority = ("normal", "normal", "urgent", "low")[n % 4]
        status, answer = self.http.call("POST", "/api/v1/service-requests", token=self.tokens["dispatcher"],
                                        body={"asset_id": asset_id, "priority": priority,
                                              "description": f"fault-injection request {n}"})
        if status != 201:
            self._unexpected(f"open request {n}: HTTP {status} {answer}")
            return
        tracked = Tracked(answer["id"], answer["instance_id"], PLANS[n % len(PLANS)])
        with self.lock:
            self.requests[tracked.id] = tracked
            self.by_instance[tracked.instance_id] = tracked

    def _unexpected(self, text: str) -> None:
        with self.lock:
            self.unexpected.append(text)

    # -- one round of looking and acting ------------------------------------------------------------
    def tick(self) -> dict:
        """Look at the open requests and inboxes once and start whatever each person would do now;
        returns counts of what is still open."""
        seen = time.monotonic()
        open_requests = self._open_requests()
        reviews = self._inbox("servicemanager")
        manual = self._inbox("dispatcher")
        for task in (t for t in reviews if t["id"] not in self.done_tasks):
            tracked = self.by_instance.get(task["instance_id"])
            if tracked is not None and task["element_id"] == "review_response_breach":
                tracked.breach_seen = True
            self._start_task(task, "servicemanager", self._review_data(task))
        escalated = {r["id"]: r for r in open_requests}
        for task in manual:
            tracked = self.by_instance.get(task["instance_id"])
            row = escalated.get(tracked.id) if tracked else None
            if row is not None and row["escalated_at"] and _passed(task["due_at"]) and tracked.settled < seen:
                self._start(tracked, self._override, row)
        for row in open_requests:
            tracked = self.requests.get(row["id"])
            if tracked is None or tracked.busy or tracked.settled > seen:
                continue
            action = self._next_action(tracked, row)
            if action is not None:
                self._start(tracked, action, row)
        return {"open": len(open_requests), "reviews": len(reviews), "manual": len(manual)}

    def running_instances(self) -> int:
        """How many after-sales process instances still run (the admin's view)."""
        status, rows = self.http.call("GET", "/api/v1/instances?process_key=after_sales_service&status=running"
                                      "&limit=500", token=self.tokens["admin"])
        return len(rows) if status == 200 else -1

    def _open_requests(self) -> list[dict]:
        rows, cursor = [], ""
        while True:
            status, page = self.http.call("GET", f"/api/v1/service-requests?open=true&limit=200{cursor}",
                                          token=self.tokens["dispatcher"])
            if status != 200:
                return rows
            rows.extend(page)
            if len(page) < 200:
                return rows
            cursor = f"&cursor={page[-1]['id']}"

    def _inbox(self, username: str) -> list[dict]:
        status, tasks = self.http.call("GET", "/api/v1/tasks?limit=500", token=self.tokens[username])
        return tasks if status == 200 else []

    def _start(self, tracked: Tracked, action, row: dict) -> None:
        with self.lock:
            if tracked.busy:
                return
            tracked.busy = True

        def run():
            try:
                action(tracked, row)
            except Exception as err:  # noqa: BLE001 - a driver bug must show up in the summary, not hang
                self._unexpected(f"request {tracked.id}: {err!r}")
            finally:
                tracked.settled, tracked.busy = time.monotonic(), False

        self.pool.submit(run)

    def _start_task(self, task: dict, username: str, data: dict) -> None:
        with self.lock:
            if task["id"] in self.busy_tasks:
                return
            self.busy_tasks.add(task["id"])

        def run():
            try:
                status, answer = self.http.call("POST", f"/api/v1/tasks/{task['id']}/complete",
                                                token=self.tokens[username],
                                                body={"data": data, "version": task["instance_version"]})
                if self._count(f"{task['element_id']} completed", status, answer, ok=(200,)):
                    self.done_tasks.add(task["id"])
            finally:
                with self.lock:
                    self.busy_tasks.discard(task["id"])

        self.pool.submit(run)

    @staticmethod
    def _review_data(task: dict) -> dict:
        if task["form_key"] == "low_rating_follow_up":
            return {"customer_contacted": True, "outcome": "called the customer, apologised"}
        return {"action_taken": "looked into it with the dispatcher"}

    def _count(self, action: str, status: int, answer, ok=(200, 201)) -> bool:
        """Count an action's outcome; 409/404 mean the world moved on meanwhile (looked at again next round)."""
        with self.lock:
            self.actions[f"{action}: {status}"] += 1
        if status in ok:
            return True
        if status not in (404, 409) and status < 500:
            self._unexpected(f"{action}: HTTP {status} {str(answer)[:300]}")
        return False

    # -- the engineer's and customer's side ------------------------------------------------------------
    def _next_action(self, tracked: Tracked, row: dict):
        status, plan = row["status"], tracked.plan
        if status != "offered":
            tracked.offered_to = None
        if status == "offered":
            if row["engineer_id"] != tracked.offered_to:
                tracked.offers, tracked.offered_to = tracked.offers + 1, row["engineer_id"]
            if plan.wait_for_breach and not tracked.breach_seen:
                return None
            if tracked.offers == 1 and plan.first_offer == "ignore":
                return None
            if tracked.offers == 1 and plan.first_offer == "decline" and not tracked.declined:
                return self._decline
            return self._accept
        return {"accepted": self._travel, "en_route": self._travel, "on_site": self._repair,
                "work_done": self._finish}.get(status)

    def _mobile(self, tracked: Tracked, row: dict, action: str, body: dict | None = None) -> tuple[int, object]:
        token = self.engineer_token[row["engineer_id"]]
        # One key per logical step: a retried delivery replays, a different step never reuses a key.
        key = f"{tracked.id}-{action}-{(body or {}).get('status', '')}-{tracked.visits}-{tracked.offers}"
        return self.http.call("POST", f"/api/mobile/v1/work-orders/{tracked.id}/{action}", token=token,
                              body=body or {}, idempotency_key=key)

    def _accept(self, tracked: Tracked, row: dict) -> None:
        self._count("accept", *self._mobile(tracked, row, "accept"))

    def _decline(self, tracked: Tracked, row: dict) -> None:
        if self._count("decline", *self._mobile(tracked, row, "decline", {"reason": "van broke down"})):
            tracked.declined = True

    def _travel(self, tracked: Tracked, row: dict) -> None:
        if row["status"] == "accepted":
            self._count("en route", *self._mobile(tracked, row, "status", {"status": "en_route"}))
        self._count("on site", *self._mobile(tracked, row, "status", {"status": "on_site"}))

    def _repair(self, tracked: Tracked, row: dict) -> None:
        fixed = not (tracked.plan.revisit and tracked.visits == 0)
        if self._count("work done", *self._mobile(tracked, row, "work-done", {
                "fixed": fixed, "notes": "replaced the belt" if fixed else "needs a part", "labour_minutes": 45})):
            tracked.visits += 1

    def _finish(self, tracked: Tracked, row: dict) -> None:
        if row["amount_due"] and not tracked.paid:
            status, answer = self._mobile(tracked, row, "payment", {"method": "cash",
                                                                    "amount": f"{row['amount_due']:.2f}"})
            tracked.paid = self._count("payment", status, answer)
            if not tracked.paid:
                return
        status, sheet = self._mobile(tracked, row, "complete", {"summary": "all done"})
        if not self._count("complete", status, sheet):
            return
        tracked.completed = True
        if tracked.plan.stars is not None:
            path = urllib.parse.urlsplit(sheet["rating_url"]).path
            status, answer = self.http.call("POST", path, form={"stars": tracked.plan.stars, "comment": "thanks"})
            tracked.rated = self._count("rating", status, answer, ok=(201,))

    # -- the dispatcher's side ---------------------------------------------------------------------------
    def _override(self, tracked: Tracked, row: dict) -> None:
        """Send an escalated request to the engineer with its skill who got the fewest overrides so far."""
        skilled = [e for e in self.engineers if row["required_skill"] in e["skills"]]
        with self.lock:
            chosen = min(skilled, key=lambda e: (self.overrides[e["id"]], e["id"]))
            self.overrides[chosen["id"]] += 1
        status, answer = self.http.call("POST", f"/api/v1/service-requests/{tracked.id}/dispatch",
                                        token=self.tokens["dispatcher"], body={"engineer_id": chosen["id"]})
        self._count("dispatcher override", status, answer)

    def close(self) -> None:
        """Wait for the actions in flight."""
        self.pool.shutdown(wait=True)


def _passed(moment: str | None) -> bool:
    return moment is None or datetime.fromisoformat(moment) <= datetime.now(UTC)
