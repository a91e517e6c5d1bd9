// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title VaultRegistry
/// @notice The list of vaults a keeper watches. `version` increases on every change so a keeper
/// can tell that its cached list is out of date with one cheap call. Ownership moves in two
/// steps (OpenZeppelin Ownable2Step).
contract VaultRegistry is Ownable2Step {
    error ZeroAddress();
    error AlreadyRegistered(address vault);
    error NotRegistered(address vault);

    event VaultAdded(address indexed vault);
    event VaultRemoved(address indexed vault);
    uint64 public version;
    address[] private _vaults;
    /// @dev 1-based position in `_vaults`; 0 means not registered.
    mapping(address => uint256) private _position;

    constructor(address owner_) Ownable(owner_) {}

    function vaults() external view returns (address[] memory) {
        return _vaults;
    }

    function isRegistered(address vault) external view returns (bool) {
        return _position[vault] != 0;
    }

    function addVault(address vault) external onlyOwner {
        if (vault == address(0)) revert ZeroAddress();
        if (_position[vault] != 0) revert AlreadyRegistered(vault);
        _vaults.push(vault);
        _position[vault] = _vaults.length;
        ++version;
        emit VaultAdded(vault);
    }

    /// @notice Remove a vault; the last vault takes its place in the list.
    function removeVault(address vault) external onlyOwner {
        uint256 position = _position[vault];
        if (position == 0) revert NotRegistered(vault);
        uint256 lastPosition = _vaults.length;
        if (position != lastPosition) {
            address moved = _vaults[lastPosition - 1];
            _vaults[position - 1] = moved;
            _position[moved] = position;
        }
        _vaults.pop();
        delete _position[vault];
        ++version;
        emit VaultRemoved(vault);
    }
}
