import { JsonPipe } from '@angular/common';
import { Component, inject } from '@angular/core';

import { BuildInfo } from '../build-info';

/** In-app view of the build's health document (the server answers `/healthz` itself on a full load). */
@Component({
  selector: 'app-health-page',
  imports: [JsonPipe],
  template: `
    <h1 data-testid="page-title">Health</h1>
    <pre data-testid="healthz-json">{{ info.health() ?? { status: 'unknown' } | json }}</pre>
  `,
})
export class HealthPage {
  protected readonly info = inject(BuildInfo);
}
