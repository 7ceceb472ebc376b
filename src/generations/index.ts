export {
  GenerationPage,
  type GenerationPageOptions,
  openGenerationPageOrNull,
  type PageHealthProblem,
  type WarningSink,
} from './page.js';
export { defaultPagePath, PAGE_FILE_NAME, ROOT_PAGE_PATH } from './paths.js';
export { PAGE_SIZE, SLOT_COUNT, Slot, type SlotName } from './slots.js';
