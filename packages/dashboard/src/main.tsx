import { render } from "preact";
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  ApiFailure,
  can,
  exchangeToken,
  login,
  logout,
  onSessionExpired,
  sessionRestored,
  whoami,
  type Operator,
} from "./api";
import { connect, disconnect, onClosed, onStatus, subscribe } from "./events";
import { Analytics } from "./screens/analytics";
import { Approvals } from "./screens/approvals";
import { Audit } from "./screens/audit";
import { Budgets, Limits } from "./screens/limits";
import { KillSwitch } from "./killswitch";
import { Feed } from "./screens/feed";
import { Sessions } from "./screens/sessions";
import { Tools } from "./screens/tools";
import { Link, navigate, useRoute } from "./util";
import "./style.css";

const SCREENS = [
  { path: "/feed", label: "Feed" },
  { path: "/approvals", label: "Approvals" },
  { path: "/audit", label: "Audit" },
  { path: "/limits", label: "Limits" },
  { path: "/budgets", label: "Budgets" },
  { path: "/tools", label: "Tools" },
  { path: "/sessions", label: "Sessions" },
  { path: "/analytics", label: "Analytics" },
];

/** A short beep through WebAudio (no asset); browsers allow it after the first user gesture. */
function beep(): void {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
    osc.onended = () => void ctx.close();
  } catch {
    // no audio device: the title badge still shows the ticket
  }
}

function LoginForm(props: { onDone: (op: Operator) => void; title: string; note?: string }): JSX.Element {
  const [secret, setSecret] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <form
      class="login card"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
          props.onDone(await login(secret));
          setSecret("");
        } catch (err) {
          setError(
            err instanceof ApiFailure && err.status === 429
              ? "Too many failed logins from this address; wait and try again."
              : err instanceof ApiFailure && err.status === 401
                ? "Wrong secret."
                : String(err instanceof Error ? err.message : err),
          );
        } finally {
          setBusy(false);
        }
      }}
    >
      <h1>{props.title}</h1>
      {props.note && <p class="muted">{props.note}</p>}
      <label for="secret">Secret (dashboard.api_secret or your operator secret)</label>
      <input
        id="secret"
        ref={input}
        type="password"
        autocomplete="current-password"
        value={secret}
        onInput={(e) => setSecret((e.target as HTMLInputElement).value)}
        required
      />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary" disabled={busy || !secret}>
        Log in
      </button>
    </form>
  );
}

function App(): JSX.Element {
  const [operator, setOperator] = useState<Operator | null | undefined>(undefined);
  const [expired, setExpired] = useState(false);
  const [connected, setConnected] = useState(false);
  const [unseen, setUnseen] = useState(0);
  const [bootError, setBootError] = useState<string | null>(null);
  const route = useRoute();

  useEffect(() => {
    onSessionExpired(() => setExpired(true));
    const params = new URLSearchParams(location.search);
    const token = params.get("token");
    const boot = async () => {
      if (token) {
        params.delete("token");
        const rest = params.toString();
        // Removed from the address bar (and history) before anything else happens.
        history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
        try {
          return await exchangeToken(token);
        } catch (err) {
          setBootError(
            `That login link did not work (${err instanceof Error ? err.message : String(err)}): ` +
              "it is single-use and expires quickly. Log in with the secret instead.",
          );
        }
      }
      return whoami();
    };
    boot().then(setOperator, (err: unknown) => {
      setBootError(String(err instanceof Error ? err.message : err));
      setOperator(null);
    });
  }, []);

  useEffect(() => {
    if (!operator) return;
    connect();
    const offStatus = onStatus(setConnected);
    let retry: ReturnType<typeof setTimeout> | undefined;
    const offClosed = onClosed(() => {
      // Expired session: ask for the secret (the stream restarts after the new login); else retry.
      whoami().then(
        (op) => {
          if (op === null) setExpired(true);
          else retry = setTimeout(connect, 2000);
        },
        () => (retry = setTimeout(connect, 2000)),
      );
    });
    const offEvents = subscribe((event) => {
      if (event.type === "approval_requested") {
        if (document.hidden || location.pathname !== "/approvals") setUnseen((n) => n + 1);
        beep();
      }
    });
    return () => {
      clearTimeout(retry);
      offClosed();
      offStatus();
      offEvents();
      disconnect();
    };
  }, [operator]);

  useEffect(() => {
    document.title = unseen > 0 ? `(${unseen}) Helio console` : "Helio console";
  }, [unseen]);

  useEffect(() => {
    if (route.path === "/approvals" && !document.hidden) setUnseen(0);
    const onVisible = () => {
      if (!document.hidden && location.pathname === "/approvals") setUnseen(0);
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => document.removeEventListener("visibilitychange", onVisible);
  }, [route.path]);

  if (operator === undefined) return <p class="muted boot">Loading…</p>;
  if (operator === null) {
    return (
      <main id="main" class="center">
        {bootError && (
          <p class="error" role="alert">
            {bootError}
          </p>
        )}
        <LoginForm title="Helio console" onDone={setOperator} />
      </main>
    );
  }

  if (route.path === "/" || route.path === "/login") navigate("/feed" + location.search, true);
  const path = location.pathname;
  let screen: JSX.Element;
  if (path.startsWith("/approvals")) screen = <Approvals operator={operator} />;
  else if (path.startsWith("/audit")) screen = <Audit />;
  else if (path.startsWith("/limits")) screen = <Limits />;
  else if (path.startsWith("/budgets")) screen = <Budgets />;
  else if (path.startsWith("/tools")) screen = <Tools operator={operator} />;
  else if (path.startsWith("/sessions")) screen = <Sessions />;
  else if (path.startsWith("/analytics")) screen = <Analytics />;
  else if (path.startsWith("/feed")) screen = <Feed />;
  else
    screen = (
      <p>
        No such page. <Link href="/feed">Go to the feed</Link>.
      </p>
    );

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Helio</span>
        <nav aria-label="Screens">
          {SCREENS.map((s) => (
            <Link
              href={s.path}
              class={path.startsWith(s.path) ? "active" : ""}
              aria-current={path.startsWith(s.path) ? "page" : undefined}
            >
              {s.label}
              {s.path === "/approvals" && unseen > 0 && (
                <span class="count" aria-label={`${unseen} new`}>
                  {unseen}
                </span>
              )}
            </Link>
          ))}
        </nav>
        <span class="who">
          <span class={`dot ${connected ? "on" : "off"}`} title={connected ? "live" : "reconnecting"} />
          <span class="sr">{connected ? "live" : "reconnecting"}</span>
          {operator.operator} <span class="role">{operator.role}</span>
          <button
            type="button"
            onClick={async () => {
              await logout();
              disconnect();
              setOperator(null);
            }}
          >
            Log out
          </button>
        </span>
      </header>
      <main id="main" data-role={operator.role} data-can-approve={can(operator, "approver")}>
        <KillSwitch operator={operator} />
        {screen}
      </main>
      {expired && (
        <div class="modal" role="dialog" aria-modal="true" aria-label="Session expired">
          <LoginForm
            title="Session expired"
            note="Log in again to carry on; this page keeps its state."
            onDone={(op) => {
              setExpired(false);
              setOperator((old) => (old && old.operator === op.operator && old.role === op.role ? old : op));
              sessionRestored();
              connect(); // no-op when the stream is still open
            }}
          />
        </div>
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);
