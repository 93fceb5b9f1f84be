/** Times as the reader reads them: local date and time with the zone's name ("3 Dec 2026, 12:04 UTC"). */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

const FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZoneName: "short" });
const WITH_SECONDS = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });

export function formatTime(time: Timestamp | undefined, seconds = false): string {
  if (!time) return "";
  return (seconds ? WITH_SECONDS : FORMAT).format(timestampDate(time));
}
