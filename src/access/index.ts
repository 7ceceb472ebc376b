export {
  type AccessControlBackend,
  type AccessControlConfig,
  accessBackend,
  accessConfig,
  accessConfigOrDefault,
  DEFAULT_ACCESS_BACKEND,
  init,
  initSeparate,
  PVE_ACCESS_CONTROL,
  rolePrivileges,
  SUPERUSER,
} from './control.js';
export {
  checkPrivileges,
  DEFAULT_PERMISSION_PATHS,
  type PermissionOptions,
  type PrivilegeMap,
  permissions,
  permissionsTree,
  rolesAt,
} from './permissions.js';
export { PVE_BUILTIN_ROLES, PVE_PRIVILEGES } from './privileges.js';
export { pageBackend, UserConfigStore, type UserConfigStoreOptions } from './user-info.js';
