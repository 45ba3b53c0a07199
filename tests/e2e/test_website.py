"""The website's form and the Prefect UI in a real browser: Debian's headless chromium,
driven by Selenium through Debian's chromium-driver, against the shared sandbox host.

The form (website/form.html with signup.mjs) is served as the marketing site serves it,
from the campaign's allowed origin (the sandbox's `galatek_website_origins`,
https://galatek.dev), by a small HTTPS server on the controller; chromium resolves that
name to it and the sandbox's name to the sandbox host, so the door is called cross-origin
exactly as in production. Chromium trusts only these two certificates' keys: the
sandbox's leaf (checked against the sandbox's CA first) and the page server's own.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import http.server
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.sandbox import CA_PATH, DOOR, ROOT, Sandbox, sample_signup

pytestmark = pytest.mark.e2e

ORIGIN = "galatek.dev"  # the sandbox's allowed website origin, https://galatek.dev
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium and chromium-driver (make deps)
CHROMEDRIVER = "/usr/bin/chromedriver"
# Retry-After of the door's 429 (the sandbox keeps the role's default).
RETRY_AFTER = yaml.safe_load((ROOT / "roles/nginx_edge/defaults/main.yml").read_text())[
    "nginx_edge_retry_after"
]


def spki_hash(cert: x509.Certificate) -> str:
    """What chromium's --ignore-certificate-errors-spki-list takes: base64(sha256(SPKI))."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def sandbox_leaf(box: Sandbox) -> x509.Certificate:
    """The sandbox's certificate, as verified against the sandbox's own CA."""
    context = ssl.create_default_context(cadata=box.exec("cat", CA_PATH))
    with (
        socket.create_connection((box.ip, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=box.host) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.fixture(scope="module")
def website(tmp_path_factory) -> Iterator[tuple[int, x509.Certificate]]:
    """website/ over HTTPS on a local port, with a throwaway certificate for galatek.dev."""
    folder = tmp_path_factory.mktemp("website")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ORIGIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ORIGIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(http.server.SimpleHTTPRequestHandler):
        # Module scripts need a JavaScript type.
        extensions_map: ClassVar = {
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".mjs": "text/javascript",
        }

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Handler, directory=str(ROOT / "website"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(sandbox, website) -> Iterator[webdriver.Chrome]:
    port, cert = website
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # chromium's own sandbox cannot run as root
        f"--host-resolver-rules=MAP {ORIGIN}:443 127.0.0.1:{port}, MAP {sandbox.host} {sandbox.ip}",
        "--ignore-certificate-errors-spki-list="
        f"{spki_hash(sandbox_leaf(sandbox))},{spki_hash(cert)}",
    ):
        options.add_argument(argument)
    # Every request the browser makes (DevTools network events) and its console.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def network_events(driver: webdriver.Chrome) -> list[dict]:
    """DevTools Network events since the last call (the log empties as it is read)."""
    messages = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [m for m in messages if m["method"].startswith("Network.")]


def door_posts(events: list[dict]) -> list[dict]:
    """Each POST the page sent to the door, in order: its Idempotency-Key, the answer's
    status and Retry-After, and when (DevTools' clock, seconds) it was sent and answered."""
    posts = {}
    for event in events:
        params = event["params"]
        if event["method"] == "Network.requestWillBeSent":
            request = params["request"]
            if request["method"] == "POST" and urlsplit(request["url"]).path == DOOR:
                posts[params["requestId"]] = {
                    "key": request["headers"].get("Idempotency-Key"),
                    "sent": params["timestamp"],
                }
        elif event["method"] == "Network.responseReceived" and params["requestId"] in posts:
            headers = {k.lower(): v for k, v in params["response"]["headers"].items()}
            posts[params["requestId"]].update(
                status=params["response"]["status"],
                retry_after=headers.get("retry-after"),
                answered=params["timestamp"],
            )
    return list(posts.values())


def open_form(driver: webdriver.Chrome, box: Sandbox, email: str, first_name: str) -> None:
    """The form as a visitor sees it after the quiz: the site has set the door's URL (its
    SIGNUP_WEBHOOK_URL) and the quiz's scores; the visitor types the rest."""
    driver.get(f"https://{ORIGIN}/form.html")
    signup = sample_signup(email)
    scores = {k: v for k, v in signup.items() if k.endswith(("_score", "_systems"))}
    driver.execute_script(
        """
        const [door, scores] = arguments;
        const form = document.getElementById("signup");
        form.dataset.door = door;
        for (const [name, value] of Object.entries(scores)) {
          const input = form.querySelector(`[name="${name}"]`);
          if (input) { input.value = value; }
        }
        form.addEventListener("signup:done", (e) => { window.signupDone = e.detail; });
        """,
        f"https://{box.host}{DOOR}",
        scores,
    )
    form = driver.find_element(By.ID, "signup")
    form.find_element(By.NAME, "email").send_keys(email)
    form.find_element(By.NAME, "first_name").send_keys(first_name)
    form.find_element(By.NAME, "business_name").send_keys(signup["business_name"])


def submit_and_wait(driver: webdriver.Chrome, timeout: float) -> dict | None:
    """Submit; the form's outcome: signup:done's detail, or None once an error is shown."""
    driver.find_element(By.CSS_SELECTOR, "#signup button").click()
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "return window.signupDone || !document.querySelector('.signup-error').hidden"
        )
    )
    return driver.execute_script("return window.signupDone || null")


def test_a_signup_from_the_form_is_accepted_and_its_run_completes(sandbox, browser):
    network_events(browser)
    open_form(browser, sandbox, "form@example.com", "Ada")
    done = submit_and_wait(browser, timeout=30)

    assert done is not None, browser.find_element(By.ID, "signup").text
    assert done["attempts"] == 1
    assert "Thanks!" in browser.find_element(By.ID, "signup").text
    [post] = door_posts(network_events(browser))
    assert post["status"] == 202
    uuid.UUID(post["key"])  # the form's own key, one per form fill
    run = sandbox.wait_run(done["flowRunId"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["email"] == "form@example.com"


def test_a_refused_field_is_shown_next_to_it_and_starts_no_run(sandbox, browser):
    before = sandbox.count_runs()
    open_form(browser, sandbox, "link@example.com", "Ada www.cheap-pills.example")
    done = submit_and_wait(browser, timeout=30)

    assert done is None
    name = browser.find_element(By.NAME, "first_name")
    assert name.get_attribute("aria-invalid") == "true"
    message = browser.find_element(By.ID, "signup-error")
    assert message.is_displayed()
    assert message.text == "Please check first_name: links are not allowed"
    # Right after the field's label, where the visitor is looking.
    label = name.find_element(By.XPATH, "./ancestor::label")
    follows = label.find_element(By.XPATH, "following-sibling::*[1]")
    assert follows.get_attribute("id") == "signup-error"
    assert sandbox.count_runs() == before


def exhaust_door_limit(box: Sandbox) -> int:
    """Junk from this machine (the browser's address too) until the door's per-address
    limit answers 429; no run is made. Returns how many requests that took."""
    for sent in range(1, 40):
        if box.https("GET", DOOR, headers={"Origin": f"https://{ORIGIN}"}).status_code == 429:
            return sent
    raise AssertionError("the door's per-address limit never answered 429")


def test_a_429_is_read_waited_out_and_sent_again_with_the_same_key(sandbox, browser):
    # The form's POSTs are preflighted; the preflight is cached (Access-Control-Max-Age),
    # so once the form has talked to the door the 429 lands on the POST itself.
    network_events(browser)
    open_form(browser, sandbox, "busy@example.com", "Ada www.example.com")
    assert submit_and_wait(browser, timeout=30) is None  # a 422: the door was reached
    name = browser.find_element(By.NAME, "first_name")
    name.clear()
    name.send_keys("Ada")  # a changed field: a new form fill, a new key

    exhaust_door_limit(sandbox)
    done = submit_and_wait(browser, timeout=RETRY_AFTER + 90)

    assert done is not None, browser.find_element(By.ID, "signup").text
    assert done["attempts"] == 2
    refused, limited, accepted = door_posts(network_events(browser))
    assert [refused["status"], limited["status"], accepted["status"]] == [422, 429, 202]
    assert limited["key"] == accepted["key"] != refused["key"]
    # The script read Retry-After (exposed by the door's CORS headers) and waited it out.
    assert limited["retry_after"] == str(RETRY_AFTER)
    assert accepted["sent"] - limited["answered"] >= RETRY_AFTER
    run = sandbox.wait_run(done["flowRunId"])
    assert run["state"]["type"] == "COMPLETED", run["state"]


def csp_reports(driver: webdriver.Chrome) -> list[str]:
    """Content-Security-Policy violations chromium reported in the console since the last
    call (a call the policy stops never reaches the network log)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def test_the_ui_signed_in_through_the_edge_stays_on_our_origin(sandbox, browser):
    network_events(browser)
    csp_reports(browser)
    user, password = sandbox.auth
    browser.get(f"https://{user}:{password}@{sandbox.host}/deployments")
    WebDriverWait(browser, 60).until(
        lambda d: "christmas-signup-handler" in d.find_element(By.TAG_NAME, "body").text
    )
    time.sleep(5)  # let the page's background calls (and any analytics) go out
    events = network_events(browser)
    ui_blocked = csp_reports(browser)

    hosts = {
        urlsplit(e["params"]["request"]["url"]).hostname
        for e in events
        if e["method"] == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith(("data:", "blob:"))
    }
    assert hosts == {sandbox.host}, hosts  # the browser asked no one else
    [*_, page] = [
        e["params"]["response"]
        for e in events
        if e["method"] == "Network.responseReceived" and e["params"]["type"] == "Document"
    ]
    assert (urlsplit(page["url"]).path, page["status"]) == ("/deployments", 200)
    policy = {k.lower(): v for k, v in page["headers"].items()}["content-security-policy"]
    assert "connect-src 'self'" in policy, policy

    # A script on the UI's page that calls out (as the UI's analytics did) is stopped
    # by the policy: a fetch and a websocket to other hosts.
    probe = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const seen = [];
        document.addEventListener("securitypolicyviolation", (e) => {
          seen.push(`${e.effectiveDirective} ${e.blockedURI}`);
        });
        (async () => {
          let fetched = "answered";
          try {
            await fetch("https://api2.amplitude.com/2/httpapi", {method: "POST", body: "{}"});
          } catch (error) {
            fetched = "refused";
          }
          new WebSocket("wss://collector.analytics.test/socket");
          setTimeout(() => done({fetched, seen}), 1000);
        })();
        """
    )
    assert probe["fetched"] == "refused", probe
    assert sorted(probe["seen"]) == [
        "connect-src https://api2.amplitude.com/2/httpapi",
        "connect-src wss://collector.analytics.test/socket",
    ], probe
    left = [
        e
        for e in network_events(browser)
        if e["method"] == "Network.responseReceived"
        and urlsplit(e["params"]["response"]["url"]).hostname != sandbox.host
    ]
    assert left == []
    print(
        f"UI: {len(events)} network events, no host but {sandbox.host}; third-party calls "
        f"blocked by the CSP: {len(ui_blocked)} from the UI itself, "
        f"{len(csp_reports(browser))} console reports for the 2 probe calls"
    )


REFUSED = {401, 403, 429}
