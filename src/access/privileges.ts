/**
 * Proxmox VE's privileges and built-in roles (PVE 8), the default access-control
 * configuration.
 *
 * Reconstructed: the layout and the role derivation (create_roles) follow
 * PVE/AccessControl.pm as published in pve-access-control; the privilege lists
 * of the newest groups (Mapping, SDN.Use, Sys.Incoming, Sys.AccessNetwork, the
 * standalone Permissions.Modify) were rebuilt from PVE 8's release notes and
 * documentation, because no PVE 8 copy of that file was at hand. Check them
 * against pve-access-control before relying on an exact role content.
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
      'VM.Migrate',
      'VM.Monitor',
      'VM.Snapshot',
      'VM.Snapshot.Rollback',
    ],
    user: ['VM.Config.CDROM', 'VM.Config.Cloudinit', 'VM.Console', 'VM.Backup', 'VM.PowerMgmt'],
    audit: ['VM.Audit'],
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

/** In no group since PVE 8: only Administrator may change permissions. */
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
