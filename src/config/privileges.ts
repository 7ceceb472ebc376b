/**
 * Proxmox VE's privileges and built-in roles, the default access-control
 * configuration.
 *
 * Taken from PVE 9.1: `$privgroups`, `$valid_privs`, `$special_roles` and
 * `create_roles` in src/PVE/AccessControl.pm of pve-access-control, package
 * libpve-access-control 9.1.1 (commit 5ccd07d, 2026-05-15; the privilege
 * lists are unchanged since 9.1.0). PVE 9 dropped `VM.Monitor` (its uses moved
 * to the `VM.GuestAgent.*` privileges and `Sys.Audit`) and added
 * `VM.Replicate`; see REMOVED_PRIVILEGES for reading older files.
 */

interface PrivilegeGroup {
  /** Only Administrator (and root@pam) holds these. */
  readonly root: readonly string[];
  readonly admin: readonly string[];
  readonly user: readonly string[];
  readonly audit: readonly string[];
}

/** PVE's $privgroups: each category yields PVE<cat>Admin and, with user privileges, PVE<cat>User. */
const PVE_PRIVILEGE_GROUPS: Readonly<Record<string, PrivilegeGroup>> = {
  VM: {
    root: [],
    admin: [
      'VM.Config.Disk',
      'VM.Config.CPU',
      'VM.Config.Memory',
      'VM.Config.Network',
      'VM.Config.HWType',
      'VM.Config.Options',
      'VM.Allocate',
      'VM.Clone',
      'VM.GuestAgent.Unrestricted',
      'VM.Migrate',
      'VM.Replicate',
      'VM.Snapshot',
      'VM.Snapshot.Rollback',
    ],
    user: [
      'VM.Config.CDROM',
      'VM.Config.Cloudinit',
      'VM.Console',
      'VM.Backup',
      'VM.GuestAgent.FileRead',
      'VM.GuestAgent.FileSystemMgmt',
      'VM.GuestAgent.FileWrite',
      'VM.PowerMgmt',
    ],
    audit: ['VM.Audit', 'VM.GuestAgent.Audit'],
  },
  Sys: {
    root: ['Sys.PowerMgmt', 'Sys.Modify', 'Sys.Incoming', 'Sys.AccessNetwork'],
    admin: ['Sys.Console', 'Sys.Syslog'],
    user: [],
    audit: ['Sys.Audit'],
  },
  Datastore: {
    root: [],
    admin: ['Datastore.Allocate', 'Datastore.AllocateTemplate'],
    user: ['Datastore.AllocateSpace'],
    audit: ['Datastore.Audit'],
  },
  SDN: {
    root: [],
    admin: ['SDN.Allocate', 'SDN.Audit'],
    user: ['SDN.Use'],
    audit: ['SDN.Audit'],
  },
  User: {
    root: ['Realm.Allocate'],
    admin: ['User.Modify', 'Group.Allocate', 'Realm.AllocateUser'],
    user: [],
    audit: [],
  },
  Pool: {
    root: [],
    admin: ['Pool.Allocate'],
    user: ['Pool.Audit'],
    audit: ['Pool.Audit'],
  },
  Mapping: {
    root: [],
    admin: ['Mapping.Modify'],
    user: ['Mapping.Use'],
    audit: ['Mapping.Audit'],
  },
};

/** In no group: only Administrator (and root@pam) may change permissions. */
const UNGROUPED_PRIVILEGES = ['Permissions.Modify'];

function buildRoles(): { privileges: string[]; roles: Map<string, Set<string>> } {
  const all = new Set<string>(UNGROUPED_PRIVILEGES);
  const roles = new Map<string, Set<string>>();
  const grant = (role: string, privileges: readonly string[]) => {
    const set = roles.get(role) ?? new Set<string>();
    roles.set(role, set);
    for (const privilege of privileges) set.add(privilege);
  };
  grant('PVEAdmin', []);
  grant('PVEAuditor', []);
  for (const [category, group] of Object.entries(PVE_PRIVILEGE_GROUPS)) {
    for (const privilege of [...group.root, ...group.admin, ...group.user, ...group.audit]) {
      all.add(privilege);
    }
    const delegable = [...group.admin, ...group.user, ...group.audit];
    grant(`PVE${category}Admin`, delegable);
    grant('PVEAdmin', delegable);
    if (group.user.length > 0) grant(`PVE${category}User`, [...group.user, ...group.audit]);
    grant('PVEAuditor', group.audit);
  }
  // As PVE: managing mappings stays with Administrator and PVEMappingAdmin.
  roles.get('PVEAdmin')?.delete('Mapping.Modify');
  grant('PVETemplateUser', ['VM.Clone', 'VM.Audit']);
  const privileges = [...all].sort();
  roles.set('Administrator', new Set(privileges));
  roles.set('NoAccess', new Set());
  return { privileges, roles };
}

const built = buildRoles();

/** Every privilege PVE knows, sorted. */
export const PVE_PRIVILEGES: readonly string[] = Object.freeze(built.privileges);

/** PVE's built-in roles: Administrator, NoAccess, PVEAdmin, PVEAuditor, PVEVMAdmin, ... */
export const PVE_BUILTIN_ROLES: ReadonlyMap<string, ReadonlySet<string>> = built.roles;

/**
 * Privileges older PVE versions had and PVE 9 does not, with why. Reading a
 * role that names one warns and drops the privilege, as PVE 9 does with any
 * unknown privilege; the reason only makes the warning say more.
 */
export const REMOVED_PRIVILEGES: ReadonlyMap<string, string> = new Map([
  [
    'VM.Monitor',
    'removed in Proxmox VE 9 (guest agent access is VM.GuestAgent.*, the monitor needs Sys.Audit)',
  ],
]);
