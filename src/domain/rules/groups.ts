/**
 * The groups file: which users belong to which group, for CLT rules. The
 * format is the one of Qpid's FileGroupProvider, so Qpid users can reuse
 * theirs — one line per group:
 *
 *   # comment (also `!`)
 *   engineering.users = alice, bob
 *   contractors.users = carol
 *
 * A user may be in any number of groups; a group may list no users.
 */

export interface GroupsError {
  readonly line: number;
  readonly message: string;
}

export type GroupsResult =
  | { readonly ok: true; readonly groups: ReadonlyMap<string, readonly string[]> }
  | { readonly ok: false; readonly errors: readonly GroupsError[] };

const LINE = /^([^=:\s]+)\.users\s*[=:]\s*(.*)$/;
const NAME = /^[^\s,=#]+$/;

/** Parses a groups file into user → groups (in file order). */
export function parseGroups(text: string): GroupsResult {
  const errors: GroupsError[] = [];
  const members = new Map<string, Set<string>>();
  const seenGroups = new Set<string>();
  text.split(/\r\n|\r|\n/).forEach((raw, i) => {
    const line = i + 1;
    const content = raw.trim();
    if (content === '' || content.startsWith('#') || content.startsWith('!')) return;
    const m = LINE.exec(content);
    if (m === null) {
      errors.push({ line, message: `expected "GROUP.users = USER, USER, …", got "${content}"` });
      return;
    }
    const group = m[1]!;
    if (seenGroups.has(group)) {
      errors.push({ line, message: `group "${group}" is listed twice; put all its users on one line` });
      return;
    }
    seenGroups.add(group);
    const users = m[2]!.split(',').map((u) => u.trim()).filter((u) => u !== '');
    for (const user of users) {
      if (!NAME.test(user)) {
        errors.push({ line, message: `"${user}" in group "${group}" is not a user name` });
        continue;
      }
      let groups = members.get(user);
      if (groups === undefined) members.set(user, (groups = new Set()));
      groups.add(group);
    }
  });
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, groups: new Map([...members].map(([user, groups]) => [user, [...groups]])) };
}
