// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IOptionsVault} from "./interfaces/IOptionsVault.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {BlackScholes} from "./libraries/BlackScholes.sol";
import {CappedCall} from "./libraries/CappedCall.sol";

/// @title OptionsVault (v2)
/// @notice Holds quote collateral and an underlying hedge against a book of European options
/// written by governance. Keepers keep the net delta near the target by trading through an
/// allowlisted router (`rebalance`) or an allowlisted netted settlement (`settle`). Every trade
/// is checked in this contract, whatever the keeper signs: compare-and-swap on `stateNonce`,
/// a fresh oracle round, a per-trade cap, token buckets of notional and loss, the oracle bound,
/// and the direction of the trade against the on-chain Black-Scholes delta of the book.
/// @dev docs/interfaces.md is the specification. Storage is packed so that a trade reads about
/// six cold slots plus one per book leg.
contract OptionsVault is IOptionsVault, Ownable2Step, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Immutable bounds on the guards that governance can never exceed.
    struct Ceilings {
        uint256 notionalCap;
        uint256 maxTradeNotional;
        uint256 lossBudget;
    }

    /// @dev Everything a trade writes, in one slot: both bucket levels (quote units) as of the
    /// last trade, its time (the base of the refill; 0 before the first trade) and the state
    /// nonce (32 bits: 4e9 changes, exposed as uint64).
    struct Buckets {
        uint96 notional;
        uint96 loss;
        uint32 lastTradeAt;
        uint32 nonce;
    }

    /// @dev `Guards` in two slots (the bounds checked in `_checkGuards` make every cast exact).
    struct PackedGuards {
        uint96 notionalCap;
        uint96 lossBudget;
        uint32 windowSeconds;
        uint32 oracleHeartbeat;
        uint96 maxTradeNotional;
        uint96 maxOvershootWad;
        uint16 maxSlippageBps;
        uint16 correctiveReserveBps;
    }

    /// @dev The parameters a trade reads, in one slot (vol in units of 1e9 wad, rate in units
    /// of 1e12 wad); the rest of VaultParams is kept apart.
    struct HotParams {
        uint40 impliedVol;
        int24 riskFreeRate;
        int96 targetDeltaWad;
        uint96 hardLimitWad;
    }

    /// @dev One option in one slot.
    struct PackedLeg {
        uint96 strike;
        int96 size;
        uint40 expiry;
        bool isCall;
    }

    struct PendingGuards {
        PackedGuards guards;
        uint64 eta;
        uint64 version;
    }

    /// @dev What a trade's checks computed before its interaction.
    struct Admitted {
        uint256 answer;
        uint256 required;
        uint256 inBefore;
        uint256 outBefore;
        int256 devBefore;
        uint256 maxOvershoot;
        uint64 nonce;
    }

    // --- constants -------------------------------------------------------------------------

    uint256 private constant BPS = 10_000;
    uint256 public constant MAX_SLIPPAGE_BPS = 500;
    uint256 public constant MAX_HEARTBEAT = 1 days;
    uint256 public constant MIN_WINDOW = 60;
    uint256 public constant MAX_WINDOW = 7 days;
    uint256 public constant MAX_RESERVE_BPS = 9000;
    uint256 public constant MIN_GUARD_DELAY = 1 hours;
    uint256 public constant MAX_GUARD_DELAY = 30 days;
    uint256 public constant MAX_BOOK_LEGS = 32;
    /// @notice Gas given to the router call and to the oracle staticcall.
    uint256 public constant SWAP_GAS_LIMIT = 1_000_000;
    uint256 public constant ORACLE_GAS_LIMIT = 100_000;
    uint256 private constant MAX_AMOUNT = type(uint96).max;
    uint256 private constant MAX_ANSWER = type(uint96).max;
    uint256 private constant MIN_VOL = 1e15;
    uint256 private constant VOL_UNIT = 1e9; // impliedVolWad is stored to 1e-9
    int256 private constant MAX_ABS_RATE = 1e18;
    int256 private constant RATE_UNIT = 1e12; // riskFreeRateWad is stored to 1e-6
    uint8 private constant MAX_DECIMALS = 18;
    uint8 private constant MAX_POLICY = 2;

    // --- immutables ------------------------------------------------------------------------

    address public immutable quote;
    address public immutable underlying;
    address public immutable feed;
    uint64 public immutable guardDelay;
    uint8 public immutable quoteDecimals;
    uint8 public immutable underlyingDecimals;
    uint8 public immutable oracleDecimals;
    uint256 public immutable notionalCapCeiling;
    uint256 public immutable maxTradeNotionalCeiling;
    uint256 public immutable lossBudgetCeiling;
    /// @dev quote value = amount * answer * _quoteScale / _valueDivisor; wad = amount * _wadScale.
    uint256 private immutable _quoteScale;
    uint256 private immutable _valueDivisor;
    uint256 private immutable _wadScale;

    // --- state -----------------------------------------------------------------------------

    /// @dev Declared first: packs into the slot of Ownable2Step's pending owner and Pausable's
    /// flag, so a trade reads "paused" and the book's length with one SLOAD.
    uint8 private _bookLength;
    Buckets private _buckets;
    PackedGuards private _guards;
    HotParams private _hot;
    uint256 private _bandFloorWad;
    uint256 private _riskAversionWad;
    uint256 private _policyParam;
    uint8 private _policy;
    address public guardian;
    uint64 public requestNonce;
    uint64 public paramsVersion;
    uint64 public guardsVersion;
    PendingGuards private _pending;
    mapping(address => bool) public isKeeper;
    mapping(address => bool) public isRouter;
    mapping(address => bool) public isSettlement;
    mapping(uint256 => PackedLeg) private _book;
    /// @dev keccak256(abi.encode(params(), guards(), book())), set by every governance change.
    bytes32 private _configHash;

    // --- modifiers -------------------------------------------------------------------------

    modifier onlyKeeperCaller() {
        if (!isKeeper[msg.sender]) revert NotKeeper(msg.sender);
        _;
    }

    modifier onlySettlementFor(address keeper) {
        if (!isSettlement[msg.sender]) revert NotSettlement(msg.sender);
        if (!isKeeper[keeper]) revert NotKeeper(keeper);
        _;
    }

    constructor(
        address owner_,
        address quote_,
        address underlying_,
        address feed_,
        VaultParams memory params_,
        Guards memory guards_,
        Ceilings memory ceilings_,
        uint64 guardDelay_
    ) Ownable(owner_) {
        if (quote_ == address(0) || underlying_ == address(0) || feed_ == address(0)) revert ZeroAddress();
        if (guardDelay_ < MIN_GUARD_DELAY || guardDelay_ > MAX_GUARD_DELAY) revert InvalidParams("guardDelay");
        _checkCeiling("notionalCapCeiling", ceilings_.notionalCap, MAX_AMOUNT);
        _checkCeiling("maxTradeNotionalCeiling", ceilings_.maxTradeNotional, MAX_AMOUNT);
        _checkCeiling("lossBudgetCeiling", ceilings_.lossBudget, MAX_AMOUNT);
        quote = quote_;
        underlying = underlying_;
        feed = feed_;
        guardDelay = guardDelay_;
        notionalCapCeiling = ceilings_.notionalCap;
        maxTradeNotionalCeiling = ceilings_.maxTradeNotional;
        lossBudgetCeiling = ceilings_.lossBudget;
        uint8 qd = _checkedDecimals(IERC20Metadata(quote_).decimals());
        uint8 ud = _checkedDecimals(IERC20Metadata(underlying_).decimals());
        uint8 od = _checkedDecimals(AggregatorV3Interface(feed_).decimals());
        (quoteDecimals, underlyingDecimals, oracleDecimals) = (qd, ud, od);
        _quoteScale = 10 ** qd;
        _valueDivisor = 10 ** (uint256(ud) + od);
        _wadScale = 10 ** (18 - uint256(ud));
        _storeParams(params_);
        PackedGuards memory g = _checkGuards(guards_);
        _guards = g;
        _buckets = Buckets(g.notionalCap, g.lossBudget, 0, 0);
        _bumpVersion();
    }

    // --- views -------------------------------------------------------------------------------

    /// @inheritdoc IOptionsVault
    function getState() external view returns (VaultState memory s) {
        s.quoteBalance = IERC20(quote).balanceOf(address(this));
        s.underlyingBalance = IERC20(underlying).balanceOf(address(this));
        (s.quoteDecimals, s.underlyingDecimals, s.oracleDecimals) = (quoteDecimals, underlyingDecimals, oracleDecimals);
        s.params = params();
        PackedGuards memory g = _guards;
        s.guards = _unpackGuards(g);
        s.book = book();
        s.oracle = _readOracle();
        s.paused = paused();
        s.requestNonce = requestNonce;
        s.paramsVersion = paramsVersion;
        Buckets memory b = _buckets;
        s.stateNonce = b.nonce;
        s.lastRebalanceAt = b.lastTradeAt;
        (s.notionalAvailable, s.lossAvailable) = _refilled(b, g);
    }

    /// @inheritdoc IOptionsVault
    function getHotState() external view returns (HotState memory s) {
        s.quoteBalance = IERC20(quote).balanceOf(address(this));
        s.underlyingBalance = IERC20(underlying).balanceOf(address(this));
        s.oracle = _readOracle();
        s.paused = paused();
        s.requestNonce = requestNonce;
        s.paramsVersion = paramsVersion;
        Buckets memory b = _buckets;
        s.stateNonce = b.nonce;
        s.lastRebalanceAt = b.lastTradeAt;
        (s.notionalAvailable, s.lossAvailable) = _refilled(b, _guards);
        s.configHash = _configHash;
    }

    /// @inheritdoc IOptionsVault
    function optionsDeltaWad() public view returns (int256) {
        return _optionsDelta(_checkedAnswer(_guards.oracleHeartbeat), _hot);
    }

    /// @inheritdoc IOptionsVault
    function deviationWad() external view returns (int256) {
        HotParams memory hot = _hot;
        uint256 held = IERC20(underlying).balanceOf(address(this));
        return _optionsDelta(_checkedAnswer(_guards.oracleHeartbeat), hot) + int256(held * _wadScale)
            - hot.targetDeltaWad;
    }

    function stateNonce() external view returns (uint64) {
        return _buckets.nonce;
    }

    function params() public view returns (VaultParams memory) {
        HotParams memory hot = _hot;
        return VaultParams({
            impliedVolWad: uint256(hot.impliedVol) * VOL_UNIT,
            riskFreeRateWad: int256(hot.riskFreeRate) * RATE_UNIT,
            targetDeltaWad: hot.targetDeltaWad,
            bandFloorWad: _bandFloorWad,
            hardLimitWad: hot.hardLimitWad,
            riskAversionWad: _riskAversionWad,
            policy: _policy,
            policyParam: _policyParam
        });
    }

    function guards() external view returns (Guards memory) {
        return _unpackGuards(_guards);
    }

    /// @notice The queued guards, the time from which they may be applied and their version
    /// (eta 0: nothing queued).
    function pendingGuards() external view returns (Guards memory g, uint256 eta, uint64 version) {
        PendingGuards memory p = _pending;
        return (_unpackGuards(p.guards), p.eta, p.version);
    }

    function book() public view returns (OptionLeg[] memory legs) {
        uint256 n = _bookLength;
        legs = new OptionLeg[](n);
        for (uint256 i = 0; i < n; ++i) {
            PackedLeg memory leg = _book[i];
            legs[i] = OptionLeg(leg.strike, leg.expiry, leg.size, leg.isCall);
        }
    }

    function bookLength() external view returns (uint256) {
        return _bookLength;
    }

    // --- keeper ------------------------------------------------------------------------------

    /// @inheritdoc IOptionsVault
    function rebalance(Trade calldata trade, address router, bytes calldata swapData)
        external
        onlyKeeperCaller
        whenNotPaused
        nonReentrant
        returns (uint256 amountOut)
    {
        if (!isRouter[router]) revert RouterNotAllowed(router);
        Admitted memory a = _admit(trade);
        IERC20 tokenIn = IERC20(trade.sellUnderlying ? underlying : quote);
        tokenIn.forceApprove(router, trade.amountIn);
        (bool ok, bytes memory reason) = CappedCall.call(router, swapData, SWAP_GAS_LIMIT);
        if (!ok) revert SwapFailed(reason);
        if (tokenIn.allowance(address(this), router) != 0) tokenIn.forceApprove(router, 0);
        amountOut = _settleTrade(trade, a, msg.sender, router);
    }

    /// @inheritdoc IOptionsVault
    function settle(Trade calldata trade, address keeper, bytes calldata data)
        external
        onlySettlementFor(keeper)
        whenNotPaused
        nonReentrant
        returns (uint256 amountOut)
    {
        Admitted memory a = _admit(trade);
        IERC20(trade.sellUnderlying ? underlying : quote).safeTransfer(msg.sender, trade.amountIn);
        ISettlement(msg.sender).onSettle(data);
        amountOut = _settleTrade(trade, a, keeper, msg.sender);
    }

    // --- governance --------------------------------------------------------------------------

    function writeOption(OptionLeg calldata leg) external onlyOwner returns (uint256 index) {
        index = _bookLength;
        if (
            leg.strike == 0 || leg.strike > type(uint96).max || leg.size == 0 || leg.size > type(int96).max
                || leg.size < type(int96).min || leg.expiry <= block.timestamp || leg.expiry > type(uint40).max
                || index >= MAX_BOOK_LEGS
        ) revert InvalidOption();
        _book[index] = PackedLeg(uint96(leg.strike), int96(leg.size), uint40(leg.expiry), leg.isCall);
        _bookLength = uint8(index + 1);
        emit OptionWritten(index, leg.strike, leg.expiry, leg.size, leg.isCall);
        _bumpVersion();
    }

    /// @notice Remove one leg; the legs after it move down by one (the book keeps its order).
    function removeOption(uint256 index) external onlyOwner {
        uint256 length = _bookLength;
        if (index >= length) revert IndexOutOfRange(index, length);
        for (uint256 i = index; i + 1 < length; ++i) {
            _book[i] = _book[i + 1];
        }
        delete _book[length - 1];
        _bookLength = uint8(length - 1);
        emit OptionRemoved(index);
        _bumpVersion();
    }

    function setParams(VaultParams calldata p) external onlyOwner {
        _storeParams(p);
        _bumpVersion();
    }

    /// @inheritdoc IOptionsVault
    function proposeGuards(Guards calldata g) external onlyOwner returns (uint256 eta) {
        PackedGuards memory next = _checkGuards(g);
        uint64 version = ++guardsVersion;
        PendingGuards memory old = _pending;
        if (old.eta != 0) {
            delete _pending;
            emit GuardsCancelled(old.version);
        }
        bool loosens = _loosens(next, _guards);
        if (!loosens) {
            emit GuardsProposed(version, block.timestamp, false);
            _applyGuards(next, version);
            return 0;
        }
        eta = block.timestamp + guardDelay;
        _pending = PendingGuards(next, uint64(eta), version);
        emit GuardsProposed(version, eta, true);
    }

    function applyGuards() external onlyOwner {
        PendingGuards memory p = _pending;
        if (p.eta == 0) revert NoPendingGuards();
        if (block.timestamp < p.eta) revert GuardsNotReady(p.eta, block.timestamp);
        delete _pending;
        _applyGuards(p.guards, p.version);
    }

    function cancelGuards() external onlyOwner {
        PendingGuards memory p = _pending;
        if (p.eta == 0) revert NoPendingGuards();
        delete _pending;
        emit GuardsCancelled(p.version);
    }

    /// @notice Refused: renouncing would leave the vault without governance (no withdrawal,
    /// no unpause, no guard change ever again). Hand governance over with transferOwnership.
    function renounceOwnership() public override onlyOwner {
        revert InvalidParams("renounceOwnership");
    }

    function setKeeper(address who, bool allowed) external onlyOwner {
        if (who == address(0)) revert ZeroAddress();
        isKeeper[who] = allowed;
        emit KeeperSet(who, allowed);
    }

    function setRouter(address router, bool allowed) external onlyOwner {
        if (router == address(0)) revert ZeroAddress();
        isRouter[router] = allowed;
        emit RouterSet(router, allowed);
    }

    function setSettlement(address settlement, bool allowed) external onlyOwner {
        if (settlement == address(0)) revert ZeroAddress();
        isSettlement[settlement] = allowed;
        emit SettlementSet(settlement, allowed);
    }

    /// @notice The guardian may pause, nothing else; address(0) removes it.
    function setGuardian(address next) external onlyOwner {
        emit GuardianSet(guardian, next);
        guardian = next;
    }

    function requestRebalance() external onlyOwner {
        uint64 nonce = ++requestNonce;
        emit RebalanceRequested(nonce, msg.sender);
    }

    /// @inheritdoc IOptionsVault
    function pause() external {
        if (msg.sender != owner() && msg.sender != guardian) revert NotGuardian(msg.sender);
        _pause();
        emit PauseChanged(msg.sender, true);
    }

    function unpause() external onlyOwner {
        _unpause();
        emit PauseChanged(msg.sender, false);
    }

    /// @notice Pull `amount` of `token` from the owner (who must have approved the vault).
    function deposit(address token, uint256 amount) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        ++_buckets.nonce;
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(token, msg.sender, amount);
    }

    function withdraw(address token, address to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        ++_buckets.nonce;
        IERC20(token).safeTransfer(to, amount);
        emit Withdrawn(token, to, amount);
    }

    // --- trade internals ---------------------------------------------------------------------

    /// @dev Checks 1-4 of docs/interfaces.md before any interaction; consumes notional, bumps
    /// the nonce and returns what the checks after the interaction need.
    function _admit(Trade calldata trade) private returns (Admitted memory a) {
        if (block.timestamp > trade.deadline) revert DeadlineExpired(trade.deadline, block.timestamp);
        Buckets memory b = _buckets;
        if (b.nonce != trade.expectedStateNonce) revert StaleState(trade.expectedStateNonce, b.nonce);
        a.nonce = uint64(b.nonce) + 1;

        PackedGuards memory g = _guards;
        a.answer = _checkedAnswer(g.oracleHeartbeat);
        uint256 amountIn = trade.amountIn;
        if (amountIn == 0) revert ZeroAmount();
        if (amountIn > MAX_AMOUNT) revert AmountTooLarge(amountIn, MAX_AMOUNT);
        bool sell = trade.sellUnderlying;
        uint256 notional = sell ? _toQuote(amountIn, a.answer) : amountIn;
        if (notional > g.maxTradeNotional) revert TradeTooLarge(notional, g.maxTradeNotional);

        (address tokenIn, address tokenOut) = sell ? (underlying, quote) : (quote, underlying);
        a.inBefore = IERC20(tokenIn).balanceOf(address(this));
        a.outBefore = IERC20(tokenOut).balanceOf(address(this));
        HotParams memory hot = _hot;
        a.devBefore = _optionsDelta(a.answer, hot) + int256((sell ? a.inBefore : a.outBefore) * _wadScale)
            - hot.targetDeltaWad;
        a.maxOvershoot = g.maxOvershootWad;
        _useNotional(b, g, notional, _abs(a.devBefore) >= hot.hardLimitWad, a.nonce);

        uint256 fair = sell ? notional : _toUnderlying(amountIn, a.answer);
        uint256 bound = fair * (BPS - g.maxSlippageBps) / BPS;
        a.required = trade.minOut > bound ? trade.minOut : bound;
    }

    /// @dev Takes `notional` from the refilled notional bucket (only an urgent trade may use the
    /// corrective reserve), refreshes the loss bucket, stamps the trade time and stores the new
    /// nonce: one SSTORE.
    function _useNotional(Buckets memory b, PackedGuards memory g, uint256 notional, bool urgent, uint64 nonce)
        private
    {
        (uint256 available, uint256 loss) = _refilled(b, g);
        uint256 usable = available;
        if (!urgent) {
            uint256 reserve = uint256(g.notionalCap) * g.correctiveReserveBps / BPS;
            usable = available > reserve ? available - reserve : 0;
        }
        if (notional > usable) revert NotionalCapExceeded(usable, notional);
        _buckets = Buckets(uint96(available - notional), uint96(loss), uint32(block.timestamp), uint32(nonce));
    }

    /// @dev Checks 5-7 after the interaction: value, loss budget, direction. Emits Traded.
    function _settleTrade(Trade calldata trade, Admitted memory a, address keeper, address via)
        private
        returns (uint256 received)
    {
        bool sell = trade.sellUnderlying;
        (address tokenIn, address tokenOut) = sell ? (underlying, quote) : (quote, underlying);
        uint256 inAfter = IERC20(tokenIn).balanceOf(address(this));
        uint256 outAfter = IERC20(tokenOut).balanceOf(address(this));
        uint256 spent = a.inBefore > inAfter ? a.inBefore - inAfter : 0;
        received = outAfter > a.outBefore ? outAfter - a.outBefore : 0;
        if (spent > trade.amountIn) revert Overspent(spent, trade.amountIn);
        if (received < a.required) revert InsufficientOutput(received, a.required);

        uint256 loss = _chargeLoss(sell, spent, received, a.answer);

        int256 moved = int256((sell ? spent : received) * _wadScale);
        _checkDirection(a.devBefore, sell ? a.devBefore - moved : a.devBefore + moved, a.maxOvershoot);
        emit Traded(keeper, via, a.nonce, sell, spent, received, loss);
    }

    /// @dev loss = max(0, oracle value given - oracle value received), quote units, charged to
    /// the loss bucket (already refilled by _useNotional in this transaction).
    function _chargeLoss(bool sell, uint256 spent, uint256 received, uint256 answer)
        private
        returns (uint256 loss)
    {
        uint256 given = sell ? _toQuote(spent, answer) : spent;
        uint256 got = sell ? received : _toQuote(received, answer);
        if (given <= got) return 0;
        loss = given - got;
        uint256 available = _buckets.loss;
        if (loss > available) revert LossBudgetExceeded(available, loss);
        _buckets.loss = uint96(available - loss);
    }

    /// @dev Passes if the deviation ends within maxOvershoot of the target, or moves toward the
    /// target without crossing it.
    function _checkDirection(int256 before, int256 afterTrade, uint256 maxOvershoot) private pure {
        uint256 absAfter = _abs(afterTrade);
        if (absAfter <= maxOvershoot) return;
        bool sameSide = (before > 0 && afterTrade > 0) || (before < 0 && afterTrade < 0);
        if (!sameSide) revert Overshoot(afterTrade, maxOvershoot);
        if (absAfter >= _abs(before)) revert WrongDirection(before, afterTrade);
    }

    /// @dev Book delta at `answer` and the implied vol, wad; expired legs count 0. Each leg is
    /// one SLOAD, unpacked by hand (the PackedLeg layout: strike, size, expiry, isCall).
    function _optionsDelta(uint256 answer, HotParams memory hot) private view returns (int256 total) {
        uint256 n = _bookLength;
        uint256 vol = uint256(hot.impliedVol) * VOL_UNIT;
        int256 rate = int256(hot.riskFreeRate) * RATE_UNIT;
        int256 scale = int256(_wadScale);
        uint256 bookSlot;
        assembly ("memory-safe") {
            bookSlot := _book.slot
        }
        unchecked {
            for (uint256 i = 0; i < n; ++i) {
                uint256 word;
                assembly ("memory-safe") {
                    mstore(0, i)
                    mstore(0x20, bookSlot)
                    word := sload(keccak256(0, 0x40))
                }
                uint256 expiry = uint40(word >> 192);
                if (expiry <= block.timestamp) continue;
                bool isCall = (word >> 232) & 1 == 1;
                int256 d = BlackScholes.delta(answer, uint96(word), expiry - block.timestamp, vol, rate, isCall);
                total += int256(int96(uint96(word >> 96))) * scale * d / 1e18;
            }
        }
    }

    // --- oracle ------------------------------------------------------------------------------

    /// @dev latestRoundData by staticcall with a fixed gas stipend, copying at most 160 bytes:
    /// a feed that reverts, burns gas or returns malformed data reads ok=false.
    function _readOracle() private view returns (OracleRound memory round) {
        address target = feed;
        bytes4 selector = AggregatorV3Interface.latestRoundData.selector;
        bool success;
        uint256 roundId;
        int256 answer;
        uint256 updatedAt;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, selector)
            success := staticcall(ORACLE_GAS_LIMIT, target, ptr, 4, ptr, 160)
            if lt(returndatasize(), 160) { success := 0 }
            roundId := mload(ptr)
            answer := mload(add(ptr, 0x20))
            updatedAt := mload(add(ptr, 0x60))
        }
        if (!success || roundId > type(uint80).max) return round;
        round = OracleRound({roundId: uint80(roundId), answer: answer, updatedAt: updatedAt, ok: true});
    }

    /// @dev The oracle answer, checked: readable, positive, bounded, fresh, not from the future.
    function _checkedAnswer(uint256 heartbeat) private view returns (uint256) {
        OracleRound memory round = _readOracle();
        if (!round.ok) revert OracleCallFailed(feed);
        if (round.answer <= 0) revert OracleNonPositive(round.answer);
        if (uint256(round.answer) > MAX_ANSWER) revert OracleAnswerTooLarge(round.answer);
        if (round.updatedAt > block.timestamp) revert OracleFromFuture(round.updatedAt, block.timestamp);
        if (round.updatedAt + heartbeat < block.timestamp) {
            revert OracleStale(round.updatedAt, uint64(heartbeat), block.timestamp);
        }
        return uint256(round.answer);
    }

    /// @dev Quote value of `amount` underlying at the oracle; rounds down.
    function _toQuote(uint256 amount, uint256 answer) private view returns (uint256) {
        return amount * answer * _quoteScale / _valueDivisor;
    }

    /// @dev Underlying bought by `amount` quote at the oracle; rounds down.
    function _toUnderlying(uint256 amount, uint256 answer) private view returns (uint256) {
        return amount * _valueDivisor / (answer * _quoteScale);
    }

    // --- buckets and guards ------------------------------------------------------------------

    /// @dev Both bucket levels now: linear refill since the last trade at capacity per window
    /// (of the guards in force), capped at capacity.
    function _refilled(Buckets memory b, PackedGuards memory g)
        private
        view
        returns (uint256 notional, uint256 loss)
    {
        uint256 elapsed = block.timestamp - b.lastTradeAt;
        notional = _refill(b.notional, g.notionalCap, elapsed, g.windowSeconds);
        loss = _refill(b.loss, g.lossBudget, elapsed, g.windowSeconds);
    }

    function _refill(uint256 level, uint256 capacity, uint256 elapsed, uint256 window)
        private
        pure
        returns (uint256)
    {
        if (level >= capacity) return capacity;
        uint256 refilled = level + capacity * elapsed / window;
        return refilled < capacity ? refilled : capacity;
    }

    /// @dev New guards; the levels are clipped to the new capacities and refill at the new rate.
    function _applyGuards(PackedGuards memory next, uint64 version) private {
        Buckets memory b = _buckets;
        _guards = next;
        if (b.notional > next.notionalCap) b.notional = next.notionalCap;
        if (b.loss > next.lossBudget) b.loss = next.lossBudget;
        _buckets = b;
        emit GuardsApplied(version);
        _bumpVersion();
    }

    /// @dev Looser in any field than `current` (a smaller window or reserve is looser).
    function _loosens(PackedGuards memory next, PackedGuards memory current) private pure returns (bool) {
        return next.maxSlippageBps > current.maxSlippageBps || next.notionalCap > current.notionalCap
            || next.lossBudget > current.lossBudget || next.windowSeconds < current.windowSeconds
            || next.maxTradeNotional > current.maxTradeNotional
            || next.correctiveReserveBps < current.correctiveReserveBps
            || next.maxOvershootWad > current.maxOvershootWad || next.oracleHeartbeat > current.oracleHeartbeat;
    }

    /// @dev Hard ceilings of docs/interfaces.md; returns the packed form.
    function _checkGuards(Guards memory g) private view returns (PackedGuards memory) {
        _checkCeiling("maxSlippageBps", g.maxSlippageBps, MAX_SLIPPAGE_BPS);
        _checkCeiling("notionalCap", g.notionalCap, notionalCapCeiling);
        _checkCeiling("lossBudget", g.lossBudget, lossBudgetCeiling);
        _checkCeiling("maxTradeNotional", g.maxTradeNotional, maxTradeNotionalCeiling);
        _checkCeiling("windowSeconds", g.windowSeconds, MAX_WINDOW);
        if (g.windowSeconds < MIN_WINDOW) revert InvalidParams("windowSeconds");
        _checkCeiling("correctiveReserveBps", g.correctiveReserveBps, MAX_RESERVE_BPS);
        _checkCeiling("maxOvershootWad", g.maxOvershootWad, type(uint96).max);
        _checkCeiling("oracleHeartbeat", g.oracleHeartbeat, MAX_HEARTBEAT);
        if (g.oracleHeartbeat == 0) revert InvalidParams("oracleHeartbeat");
        return PackedGuards({
            notionalCap: uint96(g.notionalCap),
            lossBudget: uint96(g.lossBudget),
            windowSeconds: uint32(g.windowSeconds),
            oracleHeartbeat: uint32(g.oracleHeartbeat),
            maxTradeNotional: uint96(g.maxTradeNotional),
            maxOvershootWad: uint96(g.maxOvershootWad),
            maxSlippageBps: g.maxSlippageBps,
            correctiveReserveBps: g.correctiveReserveBps
        });
    }

    function _unpackGuards(PackedGuards memory g) private pure returns (Guards memory) {
        return Guards({
            maxSlippageBps: g.maxSlippageBps,
            notionalCap: g.notionalCap,
            lossBudget: g.lossBudget,
            windowSeconds: g.windowSeconds,
            maxTradeNotional: g.maxTradeNotional,
            correctiveReserveBps: g.correctiveReserveBps,
            maxOvershootWad: g.maxOvershootWad,
            oracleHeartbeat: g.oracleHeartbeat
        });
    }

    function _checkCeiling(string memory field, uint256 value, uint256 ceiling) private pure {
        if (value > ceiling) revert AboveCeiling(field, value, ceiling);
    }

    // --- params and misc ---------------------------------------------------------------------

    function _storeParams(VaultParams memory p) private {
        uint256 vol = p.impliedVolWad;
        if (vol < MIN_VOL || vol % VOL_UNIT != 0 || vol / VOL_UNIT > type(uint40).max) {
            revert InvalidParams("impliedVolWad");
        }
        int256 rate = p.riskFreeRateWad;
        if (rate > MAX_ABS_RATE || rate < -MAX_ABS_RATE || rate % RATE_UNIT != 0) {
            revert InvalidParams("riskFreeRateWad");
        }
        if (p.targetDeltaWad > type(int96).max || p.targetDeltaWad < type(int96).min) {
            revert InvalidParams("targetDeltaWad");
        }
        if (p.hardLimitWad > type(uint96).max) revert InvalidParams("hardLimitWad");
        if (p.policy > MAX_POLICY) revert InvalidParams("policy");
        _hot = HotParams({
            impliedVol: uint40(vol / VOL_UNIT),
            riskFreeRate: int24(rate / RATE_UNIT),
            targetDeltaWad: int96(p.targetDeltaWad),
            hardLimitWad: uint96(p.hardLimitWad)
        });
        _bandFloorWad = p.bandFloorWad;
        _riskAversionWad = p.riskAversionWad;
        _policy = p.policy;
        _policyParam = p.policyParam;
    }

    /// @dev Every governance change of params, guards or book: ++paramsVersion and ++stateNonce.
    function _bumpVersion() private {
        uint64 version = ++paramsVersion;
        ++_buckets.nonce;
        _configHash = keccak256(abi.encode(params(), _unpackGuards(_guards), book()));
        emit ParamsUpdated(version);
    }

    function _checkedDecimals(uint8 decimals) private pure returns (uint8) {
        if (decimals > MAX_DECIMALS) revert InvalidDecimals(decimals);
        return decimals;
    }

    function _abs(int256 x) private pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }
}
