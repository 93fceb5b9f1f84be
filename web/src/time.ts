/** Times as the reader reads them: local date and time with the zone's name ("3 Dec 2026, 12:04 UTC"). */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

// dateStyle/timeStyle cannot be combined with timeZoneName: the fields are spelled out.
const FIELDS: Intl.DateTimeFormatOptions = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
const FORMAT = new Intl.DateTimeFormat(undefined, FIELDS);
const WITH_SECONDS = new Intl.DateTimeFormat(undefined, { ...FIELDS, second: "2-digit" });

export function formatTime(time: Timestamp | undefined, seconds = false): string {
  if (!time) return "";
  return (seconds ? WITH_SECONDS : FORMAT).format(timestampDate(time));
}
