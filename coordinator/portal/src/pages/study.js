// A study followed live: the server's event stream says when it changed, the rounds are fetched anew.

import { say } from "../config.js";

const FINAL = new Set(["completed", "declined"]);

export function initStudy() {
  const root = document.getElementById("study");
  const studyId = root.dataset.studyId;
  if (FINAL.has(root.dataset.status) || typeof EventSource === "undefined") return;
  const events = new EventSource(`/v1/studies/${studyId}/events`);
  say("live", "following live");
  events.addEventListener("study", async (event) => {
    const study = JSON.parse(event.data);
    if (FINAL.has(study.status)) events.close();
    const response = await fetch(`/studies/${studyId}/rounds`, { credentials: "same-origin" });
    if (!response.ok || response.redirected) {
      say("live", "live updates stopped: sign in again");
      events.close();
      return;
    }
    document.getElementById("rounds").innerHTML = await response.text();
    const status = document.getElementById("study-status");
    status.textContent = study.status;
    status.className = `badge status-${study.status}`;
    root.dataset.status = study.status;
    say("live", FINAL.has(study.status) ? "" : `following live, updated ${new Date().toLocaleTimeString()}`);
  });
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) say("live", "live updates stopped; reload the page");
  });
}
