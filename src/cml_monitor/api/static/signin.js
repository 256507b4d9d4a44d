// CML Worker Monitor dashboard — Signing in and out: single sign-on (authorization code with
// PKCE, in the browser, no client secret), and the header's "signed in as … / Sign out".
import { $, askForToken, drawPage, el, state } from "./core.js";

const REDIRECT_URI = `${location.origin}/`;

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function signInWithIdp() {
  const oidc = state.auth.oidc;
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("cml-monitor-pkce", JSON.stringify({ verifier, state: nonce }));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: oidc.client_id,
    redirect_uri: REDIRECT_URI,
    scope: oidc.scope,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: nonce,
  });
  location.assign(`${oidc.authorization_endpoint}?${params}`);
}

$("#sso").addEventListener("click", () => signInWithIdp());

// Back from the IdP with ?code=…&state=…: trade the code for a token. Returns an error or "".
export async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return "";
  const saved = JSON.parse(sessionStorage.getItem("cml-monitor-pkce") || "{}");
  sessionStorage.removeItem("cml-monitor-pkce");
  history.replaceState(null, "", location.pathname + location.hash);
  if (params.has("error")) return `The identity provider said: ${params.get("error")}.`;
  if (!saved.state || saved.state !== params.get("state")) return "The sign-in could not be completed; try again.";
  const oidc = state.auth.oidc;
  const response = await fetch(oidc.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: REDIRECT_URI,
      client_id: oidc.client_id,
      code_verifier: saved.verifier,
    }),
  });
  if (!response.ok) return "The identity provider refused the sign-in.";
  state.token = (await response.json()).access_token || "";
  sessionStorage.setItem("cml-monitor-token", state.token);
  return "";
}

// "signed in as <subject> (role)" and "Sign out", when the API asks who you are.
export function showWho() {
  const who = $("#who");
  if (!state.auth || state.auth.mode === "none" || !state.token) {
    who.hidden = true;
    return;
  }
  who.hidden = false;
  who.replaceChildren(
    el("span", { id: "signed-in-as", text: `signed in as ${state.subject || "?"} (${state.role})` }), " ",
    el("button", { type: "button", class: "plain signout", id: "sign-out", text: "Sign out", onclick: signOut }),
  );
}

function signOut() {
  state.token = "";
  sessionStorage.removeItem("cml-monitor-token");
  clearInterval(state.refreshTimer);
  if (state.streamAbort) state.streamAbort.abort();
  state.workers = new Map();
  $("#who").hidden = true;
  drawPage(el("p", { class: "muted", text: "Signed out." }));
  askForToken("You are signed out.");
}
