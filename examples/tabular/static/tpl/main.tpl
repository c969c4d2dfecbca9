<div class="tabular-wrapper" x-data>
  <div class="status" :class="$store.tabular.state" x-text="$store.tabular.status">Connecting...</div>
  <h1 id="title" class="title">Thywill: Tabular Application</h1>
  <div class="content">
    <div class="table-wrapper">
      <ul class="table">
        <li class="row row-header"><span>Alpha</span><span>Beta</span><span>Gamma</span><span>Delta</span><span>Epsilon</span></li>
        <template x-for="row in $store.tabular.rows" :key="row.id">
          <li class="row"><template x-for="(value, i) in row.values" :key="i"><span x-text="value"></span></template></li>
        </template>
      </ul>
    </div>
    <div class="controls">
      <button class="start" type="button" :disabled="!$store.tabular.canStart" :class="{ 'ui-enabled': $store.tabular.canStart }" @click="$store.tabular.start()">Start</button>
      <button class="stop" type="button" :disabled="!$store.tabular.canStop" :class="{ 'ui-enabled': $store.tabular.canStop }" @click="$store.tabular.stop()">Stop</button>
    </div>
  </div>
  <p id="instructions" class="instructions">
    Press Start to have the server send a row of five random numbers every one to four
    seconds, newest on top; Stop ends the stream. After a few rows the server unlocks the
    column totals, which the page loads on demand.
  </p>
  <div class="totals-host"></div>
</div>
