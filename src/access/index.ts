export {
  type AccessControlBackend,
  type AccessControlConfig,
  accessConfig,
  accessConfigOrDefault,
  DEFAULT_ACCESS_BACKEND,
  init,
  PVE_ACCESS_CONTROL,
  rolePrivileges,
  SUPERUSER,
} from '../config/access-control.js';
export { PVE_BUILTIN_ROLES, PVE_PRIVILEGES } from '../config/privileges.js';
export {
  checkPrivileges,
  DEFAULT_PERMISSION_PATHS,
  type PermissionOptions,
  type PrivilegeMap,
  permissions,
  permissionsTree,
  rolesAt,
} from './permissions.js';
export { UserConfigStore, type UserConfigStoreOptions } from './user-info.js';
