/** An upload's progress: a real <progress> element with its figures in words. */
import { formatBytes } from "../chat/MessageItem";
import type { UploadProgress } from "./uploads";

export function ProgressBar({ progress }: { progress: UploadProgress }) {
  const percent = progress.total ? Math.floor((progress.sent / progress.total) * 100) : 100;
  return (
    <div className="upload-progress" data-phase={progress.phase}>
      <label>
        {progress.name}: {progress.phase === "checking" ? "preparing" : `${percent}%`}
        {progress.resumedFrom > 0 && ` (resumed at ${formatBytes(progress.resumedFrom)})`}
        <progress max={progress.total || 1} value={progress.sent} />
      </label>
      {progress.error && <span className="error">{progress.error}</span>}
    </div>
  );
}
