// The doctor's run for its panel (GET /api/doctor/stream): each check as it arrives, grouped
// by section in the order the sections came, what a slow part waits for, then the report.
// Kept by the page, not the panel: a run goes on (and stays readable) while you look elsewhere.
import { useRef, useState } from "../ui.js";
import { doctor as doctorApi } from "../api.js";

const IDLE = { status: "idle", box: null, sections: [], waiting: null, report: null,
  error: null, since: null };

/** The findings as [{name, findings}], a section where its first finding came. */
export function groupFindings(findings) {
  const sections = [];
  for (const finding of findings) {
    const section = sections.find((s) => s.name === finding.section);
    if (section) section.findings.push(finding);
    else sections.push({ name: finding.section, findings: [finding] });
  }
  return sections;
}

const withFinding = (sections, finding) => {
  const at = sections.findIndex((s) => s.name === finding.section);
  if (at === -1) return [...sections, { name: finding.section, findings: [finding] }];
  return sections.map((s, i) => (i === at ? { ...s, findings: [...s.findings, finding] } : s));
};

/** `run`: {status: idle | running | done | stopped | interrupted | failed, box, sections,
 *  waiting: {section, what, since} while a slow part runs, report, error, since};
 *  `start(box)`: a new run (`box` null: the gateway's only box); `stop()`. */
export function useDoctor() {
  const [run, setRun] = useState(IDLE);
  const live = useRef(null); // the running run's AbortController
  const start = async (box = null) => {
    if (live.current) return; // one at a time (the gateway queues a second one anyway)
    const controller = new AbortController();
    live.current = controller;
    let local = { ...IDLE, status: "running", box, since: Date.now() };
    const update = (changes) => {
      local = { ...local, ...changes };
      setRun(local);
    };
    update({});
    try {
      for await (const { event, data } of doctorApi.stream(box, controller.signal)) {
        if (event === "waiting") {
          update({ waiting: { ...data, since: Date.now() } });
        } else if (event === "finding") {
          update({ waiting: null, sections: withFinding(local.sections, data) });
        } else if (event === "report") {
          update({ waiting: null, report: data, status: "done",
            sections: groupFindings(data.findings ?? []) });
        }
      }
      if (local.status !== "done") {
        update({ status: "interrupted", waiting: null,
          error: "The doctor's stream ended before its report (did the gateway restart?). Run it again." });
      }
    } catch (error) {
      if (error.name === "AbortError") update({ status: "stopped", waiting: null });
      else update({ status: "failed", waiting: null, error: error.message });
    } finally {
      live.current = null;
    }
  };
  const stop = () => live.current?.abort();
  return { run, start, stop };
}
